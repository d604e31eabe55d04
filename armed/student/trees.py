"""The student's second member: gradient-boosted trees over the lexical and knowledge-base features (and the
embedding cosine), trained with scikit-learn's HistGradientBoostingClassifier, served from plain arrays with numpy
(no pickle: the artefact stays data, and serving needs no scikit-learn).

Trees see the hand-made features, the MLP sees those plus the raw embeddings; averaged, they beat either alone on
train/'s tuning split (the model card records both and the blend).
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Target classes of the trees: the three benchmark bands (highly, less, irrelevant).
BANDS = 3


def fit(x: np.ndarray, bands: np.ndarray, columns: list[int], seed: int, sample_weight: np.ndarray | None = None,
        ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Fit on x[:, columns] → band index; returns (arrays for the artefact, a log)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    clf = HistGradientBoostingClassifier(max_iter=500, learning_rate=0.05, max_leaf_nodes=31, early_stopping=True,
                                         validation_fraction=0.1, random_state=seed)
    clf.fit(x[:, columns], bands, sample_weight=sample_weight)
    if list(clf.classes_) != list(range(BANDS)):
        raise ValueError(f"the training pairs cover bands {list(clf.classes_)}, the trees need all {BANDS}")
    feats, thr, left, right, leaf, value, miss, tree_class, offsets = [], [], [], [], [], [], [], [], []
    base = 0
    for iteration in clf._predictors:
        for k, pred in enumerate(iteration):
            nodes = pred.nodes
            if nodes["is_categorical"].any():
                raise ValueError("categorical splits are not used by the student")
            offsets.append(base)
            tree_class.append(k)
            # Absolute node indices; a split's feature is mapped back to the full feature vector's column.
            feats.append(np.asarray(columns, dtype=np.int32)[nodes["feature_idx"]])
            thr.append(nodes["num_threshold"].astype(np.float64))
            left.append(nodes["left"].astype(np.int32) + base)
            right.append(nodes["right"].astype(np.int32) + base)
            leaf.append(nodes["is_leaf"].astype(np.uint8))
            value.append(nodes["value"].astype(np.float64))
            miss.append(nodes["missing_go_to_left"].astype(np.uint8))
            base += len(nodes)
    arrays = {
        "trees.feature": np.concatenate(feats), "trees.threshold": np.concatenate(thr),
        "trees.left": np.concatenate(left), "trees.right": np.concatenate(right),
        "trees.is_leaf": np.concatenate(leaf), "trees.value": np.concatenate(value),
        "trees.missing_left": np.concatenate(miss), "trees.root": np.asarray(offsets, dtype=np.int32),
        "trees.tree_class": np.asarray(tree_class, dtype=np.int32),
        "trees.baseline": clf._baseline_prediction.reshape(-1).astype(np.float64),
    }
    return arrays, {"iterations": int(clf.n_iter_), "trees": len(offsets), "nodes": base}


class TreeEnsemble:
    """Numpy inference over the arrays `fit` returns: every tree walked at once, one depth level per step."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.feature = arrays["trees.feature"]
        self.threshold = arrays["trees.threshold"]
        self.left, self.right = arrays["trees.left"], arrays["trees.right"]
        self.is_leaf = arrays["trees.is_leaf"].astype(bool)
        self.value = arrays["trees.value"]
        self.missing_left = arrays["trees.missing_left"].astype(bool)
        self.root = arrays["trees.root"]
        self.tree_class = arrays["trees.tree_class"]
        self.baseline = arrays["trees.baseline"]

    def raw(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        node = np.broadcast_to(self.root, (n, len(self.root))).copy()
        rows = np.arange(n)[:, None]
        while True:
            active = ~self.is_leaf[node]
            if not active.any():
                break
            f = self.feature[node]
            v = x[rows, f].astype(np.float64)
            go_left = np.where(np.isnan(v), self.missing_left[node], v <= self.threshold[node])
            step = np.where(go_left, self.left[node], self.right[node])
            node = np.where(active, step, node)
        out = np.tile(self.baseline, (n, 1))
        leaf_values = self.value[node]
        for k in range(len(self.baseline)):
            out[:, k] += leaf_values[:, self.tree_class == k].sum(axis=1)
        return out

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """(n, 3) band probabilities (softmax of the raw scores, as scikit-learn's multiclass loss does)."""
        z = self.raw(x)
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)
