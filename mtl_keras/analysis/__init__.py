"""Analysis of the tasks themselves: which tasks help each other (affinity) and how to group them.

* :mod:`mtl_keras.analysis.grouping`: the best split of the tasks into at most K groups from an affinity
  matrix (Fifty et al., NeurIPS 2021);
* :mod:`mtl_keras.analysis.pairwise`: the pairwise-training affinity (train every pair and every task
  alone);
* :mod:`mtl_keras.analysis.affinity`: ``mtl-keras affinity``: either affinity on a recipe, the grouping,
  ``affinity.json`` and the heat-map. The lookahead affinity itself is the training callback
  :class:`mtl_keras.callbacks.LookaheadAffinity`.
"""

from mtl_keras.analysis.grouping import EXACT_MAX_TASKS, Group, Grouping, best_grouping, group_affinity

__all__ = ["EXACT_MAX_TASKS", "Group", "Grouping", "best_grouping", "group_affinity"]
