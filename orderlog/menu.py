"""The two menu types, their aliases and their labels, and the preference segments.

``preference`` is the segment rule; ``preference_col`` is the same rule as a Spark column
(pyspark is imported only there: the ingest API and the viewer do not need it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import Column

JAPANESE = "japanese"
WESTERN = "western"
MENU_TYPES: tuple[str, ...] = (JAPANESE, WESTERN)

# Accepted spellings -> canonical menu type. Matching is case-insensitive for the
# ASCII names; the Japanese words are matched as written.
MENU_ALIASES: dict[str, str] = {
    "japanese": JAPANESE,
    "western": WESTERN,
    "和食": JAPANESE,
    "洋食": WESTERN,
}

# The pages' words for each menu type and segment, per language (viewer.labels chooses
# the language); the bilingual labels below are what the JSON API and the CSVs carry.
JA = "ja"
EN = "en"
MENU_NAMES: dict[str, dict[str, str]] = {
    JA: {JAPANESE: "和食", WESTERN: "洋食"},
    EN: {JAPANESE: "Japanese", WESTERN: "Western"},
}
MENU_LABELS: dict[str, str] = {menu: f"{MENU_NAMES[JA][menu]} {MENU_NAMES[EN][menu]}" for menu in MENU_TYPES}

# A user's preference: more Japanese orders, more Western orders, or a tie.
EVEN = "even"
SEGMENTS: tuple[str, ...] = (JAPANESE, WESTERN, EVEN)
SEGMENT_NAMES: dict[str, dict[str, str]] = {
    JA: {JAPANESE: "和食派", WESTERN: "洋食派", EVEN: "どちらも"},
    EN: {JAPANESE: "Japanese-leaning", WESTERN: "Western-leaning", EVEN: "Even"},
}
SEGMENT_LABELS: dict[str, str] = {s: f"{SEGMENT_NAMES[JA][s]} {SEGMENT_NAMES[EN][s]}" for s in SEGMENTS}


def canonical_menu_type(value: str) -> str | None:
    """The canonical menu type for an accepted spelling, or None."""
    return MENU_ALIASES.get(value.strip().lower() if value.isascii() else value.strip())


def preference(japanese: int, western: int) -> str:
    """The segment of a user with these cumulative counts."""
    if japanese > western:
        return JAPANESE
    if western > japanese:
        return WESTERN
    return EVEN


def preference_col(japanese: Column, western: Column) -> Column:
    """``preference`` as a Spark column: the segment of cumulative counts."""
    from pyspark.sql import functions as F

    return F.when(japanese > western, F.lit(JAPANESE)).when(western > japanese, F.lit(WESTERN)).otherwise(F.lit(EVEN))
