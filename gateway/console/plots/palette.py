"""The Okabe-Ito palette: eight colours that stay distinct under the common colour-vision deficiencies."""

from __future__ import annotations

# Black is left out: it is the text colour. Ordered so the first few are the most distinct on white.
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")
# Markers drawn across series (promotions) use the text colour with a dash, not a hue.
MARKER = "#222222"


def colour(index: int) -> str:
    return OKABE_ITO[index % len(OKABE_ITO)]
