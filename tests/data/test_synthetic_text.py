"""synthetic_text: every label follows from the sentence's words (read here independently of the
generator), the vocabulary covers every word, and the options are checked."""

import numpy as np
import pytest

from mtl_keras.data import synthetic_text
from mtl_keras.data.synthetic_text import TOPICS, WORDS, vocabulary


def _read(sentence: str) -> tuple[int, int]:
    """(sentiment, topic) of a sentence: the topic of its topic words; positive unless the sentiment word
    is negative, flipped by a `not` just before it."""
    words = sentence.split()
    topics = {TOPICS.index(t) for t in TOPICS for w in words if w in WORDS[t]}
    assert len(topics) == 1, sentence
    at = next(i for i, w in enumerate(words) if w in WORDS["positive"] + WORDS["negative"])
    positive = words[at] in WORDS["positive"]
    if at > 0 and words[at - 1] == "not":
        positive = not positive
    return int(positive), topics.pop()


def test_labels_follow_from_the_words_without_noise():
    data = synthetic_text(n=200, n_validation=20, n_test=20, label_noise=0.0, seed=1)
    for split in data.splits.values():
        read = np.array([_read(s) for s in split.x["text"]])
        np.testing.assert_array_equal(read[:, 0], split.y["sentiment"])
        np.testing.assert_array_equal(read[:, 1], split.y["topic"])
    texts = data.train.x["text"]
    assert 0.1 < np.mean(["not" in s.split() for s in texts]) < 0.3  # negation 0.2
    assert set(" ".join(texts).split()) <= set(vocabulary())
    assert data.features == {"text": "text"} and [t.kind for t in data.tasks] == ["binary", "multiclass"]


def test_label_noise_changes_about_that_share_and_seeds_repeat():
    clean = synthetic_text(n=2000, label_noise=0.0, seed=4)
    noisy = synthetic_text(n=2000, label_noise=0.3, seed=4)
    read = np.array([_read(s) for s in noisy.train.x["text"]])
    # a replaced label equals the old one by chance: 1/2 (sentiment), 1/3 (topic)
    assert abs(np.mean(read[:, 0] != noisy.train.y["sentiment"]) - 0.3 / 2) < 0.03
    assert abs(np.mean(read[:, 1] != noisy.train.y["topic"]) - 0.3 * 2 / 3) < 0.03
    again = synthetic_text(n=2000, label_noise=0.0, seed=4)
    assert list(again.train.x["text"]) == list(clean.train.x["text"])
    with pytest.raises(ValueError, match=r"Expected `label_noise` in \[0, 1\]. Received: label_noise=2"):
        synthetic_text(label_noise=2)
