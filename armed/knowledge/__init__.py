"""The knowledge base (verified lexicons, public sources, retrieval) and the expert-rule engine."""

from armed.knowledge.base import DrugRecord, KnowledgeBase, KnowledgeError, QueryExpansion, Specificity
from armed.knowledge.rules import apply_caps, prompt_hints, recall

__all__ = [
    "DrugRecord",
    "KnowledgeBase",
    "KnowledgeError",
    "QueryExpansion",
    "Specificity",
    "apply_caps",
    "prompt_hints",
    "recall",
]
