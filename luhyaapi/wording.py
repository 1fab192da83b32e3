"""Wording shared by messages: the indefinite article before the name of a kind, type or role."""

from __future__ import annotations

# A "u" that sounds like "you" (user, unit, usual) takes "a"; "unin-" (uninstalled) is the "un-" prefix again.
_YOU_SOUNDS = ("us", "uni")


def with_article(word: str) -> str:
    """``word`` after "a" or "an", chosen by its first letters: "an instance", "an upload", "a user", "a host".

    Spelling stands in for sound, which holds for the lower-case names our messages put here (kinds of id, message
    types, resource types, roles); words like "one" or "hour" would need a list of their own."""
    lowered = word.lower()
    vowel_sound = lowered[:1] in ("a", "e", "i", "o") or (
        lowered[:1] == "u" and not (lowered.startswith(_YOU_SOUNDS) and not lowered.startswith("unin")))
    return f"{'an' if vowel_sound else 'a'} {word}"
