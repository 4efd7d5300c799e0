"""A small synthetic text multi-task data set: short sentences with a sentiment and a topic.

Each sentence is a shuffled bag of words from a fixed vocabulary (:data:`WORDS`): one or two words of its
topic (sports, food or tech), one word of its sentiment (positive or negative, with a ``not`` before it
flipping the sentiment in ``negation`` of the sentences) and two to four filler words. The tasks:

* ``sentiment`` (binary): 1 for positive, read off the sentiment word and its negation;
* ``topic`` (multiclass, 3 classes): the topic of the topic words.

``label_noise`` of each task's labels are replaced by a uniformly drawn label. Both tasks read the same
sentence but different words, a text pair for a shared encoder. Every word of :data:`WORDS` is in
:func:`vocabulary` (with BERT's special tokens), so a tokenizer built from it has no unknown word.
"""

from __future__ import annotations

import numpy as np

from mtl_keras.data.base import MultiTaskDataset, Split, _check_seed
from mtl_keras.option_types import NonNegativeInt, PositiveInt
from mtl_keras.tasks import Task

#: The words of each role.
WORDS: dict[str, tuple[str, ...]] = {
    "sports": ("game", "team", "goal", "match", "coach"),
    "food": ("pizza", "soup", "dinner", "recipe", "cheese"),
    "tech": ("phone", "laptop", "code", "screen", "battery"),
    "positive": ("good", "great", "lovely", "excellent"),
    "negative": ("bad", "awful", "boring", "terrible"),
    "filler": ("the", "a", "this", "was", "really", "very", "today", "my"),
}
TOPICS = ("sports", "food", "tech")
#: BERT's special tokens, first in :func:`vocabulary`.
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def vocabulary() -> list[str]:
    """The special tokens, ``not``, then every word of :data:`WORDS`: a WordPiece vocabulary covering the data."""
    return [*SPECIAL_TOKENS, "not", *(w for words in WORDS.values() for w in words)]


def _sentences(n: int, rng: np.random.Generator, negation: float, noise: float) -> Split:
    topics = rng.integers(0, len(TOPICS), size=n)
    positive = rng.integers(0, 2, size=n)
    negated = rng.random(n) < negation
    texts = []
    for i in range(n):
        words = list(rng.choice(WORDS[TOPICS[topics[i]]], size=rng.integers(1, 3), replace=False))
        words += list(rng.choice(WORDS["filler"], size=rng.integers(2, 5)))
        rng.shuffle(words)
        # "not" negates the sentiment word that follows it; the pair goes in at a random position.
        said = positive[i] != negated[i]
        pair = (["not"] if negated[i] else []) + [str(rng.choice(WORDS["positive" if said else "negative"]))]
        at = int(rng.integers(0, len(words) + 1))
        texts.append(" ".join(words[:at] + pair + words[at:]))
    sentiment = positive.astype(np.float32)
    topic = topics.astype(np.float32)
    flip = rng.random(n) < noise
    sentiment[flip] = rng.integers(0, 2, size=int(flip.sum()))
    flip = rng.random(n) < noise
    topic[flip] = rng.integers(0, len(TOPICS), size=int(flip.sum()))
    return Split(x={"text": np.array(texts, dtype=object)}, y={"sentiment": sentiment, "topic": topic})


def synthetic_text(
    n: PositiveInt = 400,
    seed: NonNegativeInt = 0,
    *,
    n_validation: PositiveInt = 100,
    n_test: PositiveInt = 100,
    negation: float = 0.2,
    label_noise: float = 0.05,
) -> MultiTaskDataset:
    """Sentences (feature ``text``, kind ``text``) with a ``sentiment`` and a ``topic`` task.

    Args:
        n, n_validation, n_test: the sizes of the splits (drawn independently from ``seed``).
        negation: the fraction of sentences whose sentiment word follows ``not``.
        label_noise: the fraction of each task's labels replaced by a uniformly drawn one.
    """
    seed = _check_seed(seed)
    for name, value in (("negation", negation), ("label_noise", label_noise)):
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"Expected `{name}` in [0, 1]. Received: {name}={value!r}")
    rng = np.random.default_rng(seed)
    train, validation, test = (
        _sentences(int(size), rng, negation, label_noise) for size in (n, n_validation, n_test)
    )
    return MultiTaskDataset(
        name="synthetic_text",
        tasks=[Task("sentiment", kind="binary"), Task("topic", kind="multiclass", num_classes=len(TOPICS))],
        train=train,
        validation=validation,
        test=test,
        features={"text": "text"},
        description=(
            f"Synthetic sentences over {len(vocabulary())} tokens: sentiment (binary) and topic (3 classes); "
            f"negation {negation}, label noise {label_noise}, seed {seed}."
        ),
    )


__all__ = ["SPECIAL_TOKENS", "TOPICS", "WORDS", "synthetic_text", "vocabulary"]
