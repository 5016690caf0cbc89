"""Set-of-marks: numbered boxes drawn on a screenshot, so a model can name an element by
the number it sees (OSWorld's ``som`` observation). The same ids head the rows of the
prompt's element table.

Drawing is deterministic (fixed palette, Pillow's built-in font), so training redraws
from a saved frame and listing exactly the image the policy acted on.
"""

from __future__ import annotations

from typing import Any, Sequence

from deskdojo.core.elements import Element

PALETTE = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (0, 128, 128), (240, 50, 230), (128, 0, 0), (0, 0, 128), (128, 128, 0))
"""Dark enough for white label text; an element's colour is ``PALETTE[id % 10]``."""
OUTLINE_PX = 2


def label_size(screen_height: int) -> int:
    """Label text height in screen pixels: about 1/48 of the screen (16 px at 768), so it
    stays readable after the policy's resize."""
    return max(10, screen_height // 48)


def draw_marks(frame: Any, elements: Sequence[Element], *, label_px: int | None = None) -> Any:
    """A copy of ``frame`` (H x W x 3 uint8, screen pixels) with each element's box outlined
    and its id written on a filled tag at the box's top-left corner (above the box when
    there is room, inside it otherwise)."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    image = Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8), mode="RGB")
    draw = ImageDraw.Draw(image)
    size = label_px or label_size(image.height)
    try:
        font = ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        font = ImageFont.load_default()
    for element in elements:
        x, y, w, h = element.box
        if w <= 0 or h <= 0:
            continue
        color = PALETTE[element.id % len(PALETTE)]
        draw.rectangle((x, y, x + w - 1, y + h - 1), outline=color, width=OUTLINE_PX)
        text = str(element.id)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tag_w, tag_h = right - left + 4, bottom - top + 2
        tag_y = y - tag_h if y - tag_h >= 0 else y
        draw.rectangle((x, tag_y, x + tag_w - 1, tag_y + tag_h - 1), fill=color)
        draw.text((x + 2 - left, tag_y + 1 - top), text, fill=(255, 255, 255), font=font)
    return np.asarray(image)
