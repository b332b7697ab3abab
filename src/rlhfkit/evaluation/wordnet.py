"""WordNet for METEOR: the reader lives in data/wordnet.py (the concepts task needs it too)."""

from rlhfkit.data.wordnet import DEBIAN_WORDNET, WordNetMissing, lexnames_text, load_wordnet, wordnet_folder

__all__ = ["DEBIAN_WORDNET", "WordNetMissing", "lexnames_text", "load_wordnet", "wordnet_folder"]
