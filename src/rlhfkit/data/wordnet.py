"""WordNet 3.0 (METEOR's synonym matches, the concepts task's word list and inflections), read from
installed files — never downloaded.

Where it comes from, first found wins:
1. `$RLHFKIT_WORDNET`: a folder of WordNet database files (index.noun, data.noun, ..., lexnames);
2. Debian's `wordnet-base` package (`apt-get install wordnet-base`, done by `make setup`):
   its files live in /usr/share/wordnet, without the `lexnames` file that nltk's reader needs, so
   they are copied once into $RLHFKIT_CACHE/wordnet-3.0 with `lexnames` written beside them
   (nltk refuses to read through symbolic links that leave the folder it was given);
3. nltk's own data folders, if a WordNet corpus was installed there earlier.
"""

from __future__ import annotations

import os
import shutil
from functools import lru_cache
from pathlib import Path

DEBIAN_WORDNET = Path("/usr/share/wordnet")

# WordNet 3.0's lexicographer files, numbered 00–44 (lexnames(5WN), "Lexicographer Files");
# the syntactic category follows the name: 1 noun, 2 verb, 3 adjective, 4 adverb.
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body noun.cognition "
    "noun.communication noun.event noun.feeling noun.food noun.group noun.location noun.motive noun.object "
    "noun.person noun.phenomenon noun.plant noun.possession noun.process noun.quantity noun.relation noun.shape "
    "noun.state noun.substance noun.time verb.body verb.change verb.cognition verb.communication verb.competition "
    "verb.consumption verb.contact verb.creation verb.emotion verb.motion verb.perception verb.possession "
    "verb.social verb.stative verb.weather adj.ppl"
).split()
_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
_NEEDED = [f"{kind}.{pos}" for kind in ("index", "data") for pos in ("noun", "verb", "adj", "adv")]


class WordNetMissing(FileNotFoundError):
    """No WordNet database is installed; the message says how to install one."""


def lexnames_text() -> str:
    return "".join(f"{i:02d}\t{name}\t{_CATEGORY[name.split('.')[0]]}\n" for i, name in enumerate(LEXNAMES))


def _complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in _NEEDED + ["lexnames"])


def _prepared_debian_copy() -> Path | None:
    """The Debian files copied into the cache with `lexnames` added (done once)."""
    if not all((DEBIAN_WORDNET / name).is_file() for name in _NEEDED):
        return None
    root = Path(os.environ.get("RLHFKIT_CACHE", Path.home() / ".cache" / "rlhfkit")).expanduser()
    target = root / "wordnet-3.0"
    if _complete(target):
        return target
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for source in DEBIAN_WORDNET.iterdir():
        if source.is_file():
            shutil.copyfile(source, partial / source.name)
    (partial / "lexnames").write_text(lexnames_text())
    shutil.rmtree(target, ignore_errors=True)
    os.replace(partial, target)  # atomic: a half-copied folder is never taken as complete
    return target


def wordnet_folder() -> Path:
    """A folder holding WordNet 3.0 database files that nltk's reader accepts."""
    env = os.environ.get("RLHFKIT_WORDNET")
    if env:
        folder = Path(env).expanduser()
        if not _complete(folder):
            raise WordNetMissing(f"RLHFKIT_WORDNET={env} is not a WordNet database folder "
                                 f"(it needs {', '.join(_NEEDED)} and lexnames)")
        return folder
    prepared = _prepared_debian_copy()
    if prepared is not None:
        return prepared
    import nltk.data

    for base in nltk.data.path:
        folder = Path(base) / "corpora" / "wordnet"
        if _complete(folder):
            return folder
    raise WordNetMissing("METEOR and the concepts task need the WordNet 3.0 database and none is installed: run `make setup`, or "
                         "`apt-get install wordnet-base` (Debian/Ubuntu), or point RLHFKIT_WORDNET at a folder "
                         "of WordNet database files")


@lru_cache(maxsize=1)
def load_wordnet():
    """nltk's `WordNetCorpusReader` over `wordnet_folder()` (no download, ever)."""
    import warnings

    import nltk.data
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class EnglishWordNet(WordNetCorpusReader):
        def map_wn(self, version="wordnet"):
            # The mapping to nltk's own "wordnet" corpus serves only the multilingual (OMW)
            # functions; building it would look for that corpus, which need not be installed.
            return None

    folder = wordnet_folder().resolve()
    if str(folder) not in nltk.data.path:
        nltk.data.path.append(str(folder))  # nltk only reads corpus files under its data paths
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The multilingual functions are not available")
        return EnglishWordNet(str(folder), None)
