r"""Safe identifiers for column names: the one place a CSV header becomes a TensorFlow or Keras name.

A CSV header is a tf.Example feature key exactly as written (``od280/od315_of_diluted_wines``,
``région``, ``2nd col``): serving requests are keyed by it, so raw feature keys, the serving
signature's parsing and the eval predictions keep it. But some names must be identifiers:
Keras refuses ``/`` in a layer or Input name, TensorFlow name scopes (which TFT derives from a
``vocab_filename``) accept only ``[A-Za-z0-9_.\/>-]``. Those get ``safe_name(name)``:

- ASCII letters, digits and ``_`` only: accents are dropped (``région`` -> ``region``), ``ß`` is
  ``ss``, every other run of characters becomes one ``_``;
- starting with a letter (else ``f_`` is put in front: a digit, ``_`` or nothing; TensorFlow
  refuses a top-level name scope that starts with ``_``), at most ``MAX_LENGTH`` characters;
- a name that had to change gets ``_`` and ``HASH_CHARS`` hex characters of its SHA-1 appended,
  so two names that clean to the same thing (``a b`` and ``a_b``) stay apart, and the result
  depends on the name alone: transform and train, run apart, derive the same one;
- a name that is already an identifier is kept as it is (the reference workload's vocabulary
  files keep their names).

``taken`` resolves the one collision that is left (a raw name that happens to equal another's
cleaned-and-hashed form): the hash is taken again over the name and a counter.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Collection, Iterable

MAX_LENGTH = 64
HASH_CHARS = 8
_INVALID = re.compile(r"[^A-Za-z0-9_]+")
_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")  # a letter first: TF's root name scopes want one
_SPELLED = {"ß": "ss", "æ": "ae", "Æ": "AE", "ø": "o", "Ø": "O", "œ": "oe", "Œ": "OE", "ł": "l", "Ł": "L"}


def _ascii(name: str) -> str:
    """``name`` in ASCII: accents dropped, a few letters spelled out, the rest ``_``."""
    spelled = "".join(_SPELLED.get(c, c) for c in name)
    decomposed = unicodedata.normalize("NFKD", spelled)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _INVALID.sub("_", plain)


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:HASH_CHARS]


def safe_name(name: str, taken: Collection[str] = ()) -> str:
    """A deterministic identifier (``[A-Za-z][A-Za-z0-9_]*``, <= MAX_LENGTH) for ``name`` (module doc)."""
    if _IDENTIFIER.match(name) and len(name) <= MAX_LENGTH and name not in taken:
        return name
    base = _ascii(name)
    if not base[:1].isalpha():
        base = "f_" + base
    base = base[: MAX_LENGTH - HASH_CHARS - 1]
    candidate = f"{base}_{_digest(name)}"
    attempt = 0
    while candidate in taken:
        attempt += 1
        candidate = f"{base}_{_digest(f'{name}#{attempt}')}"
    return candidate


def safe_names(names: Iterable[str]) -> dict[str, str]:
    """{name: safe_name} for several names, all distinct.

    Names that are already identifiers are placed first, so none of them is ever renamed because
    of another; the rest follow in sorted order, so the mapping does not depend on column order.
    """
    unique = sorted(set(names))
    kept = [n for n in unique if _IDENTIFIER.match(n) and len(n) <= MAX_LENGTH]
    out: dict[str, str] = {n: n for n in kept}
    taken = set(kept)
    for name in unique:
        if name in out:
            continue
        out[name] = safe_name(name, taken)
        taken.add(out[name])
    return out


# What TensorFlow and Keras say when handed a column name where they need an identifier.
_NAME_ERRORS = ("scope name", "cannot contain character `/`")
HINT = (
    "a column name is used where TensorFlow or Keras needs an identifier (a name scope, a "
    "vocab_filename, a Keras Input or layer name): derive it with "
    "components.lib.identifiers.safe_name(name) and keep the column name as the feature key"
)


def hint_for(error: BaseException) -> str:
    """``HINT`` (with a leading "; ") when ``error`` is TF or Keras refusing a name, else ""."""
    text = str(error)
    return f"; {HINT}" if any(marker in text for marker in _NAME_ERRORS) else ""
