"""Draw Resources/Icons/VQSeg.png (128x128): an axial chest CT slice with a red tumour and a codebook grid.

    .venv/bin/python Testing/contract/draw_icon.py
"""

from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

SIZE = 128
SCALE = 4  # drawn large, then downsampled: smooth edges
OUTPUT = Path(__file__).resolve().parents[2] / "Resources" / "Icons" / "VQSeg.png"


def draw() -> Image.Image:
    s = SIZE * SCALE
    image = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    pen = ImageDraw.Draw(image)

    def box(x0, y0, x1, y1):
        return [x0 * SCALE, y0 * SCALE, x1 * SCALE, y1 * SCALE]

    pen.rounded_rectangle(box(2, 2, 126, 126), radius=22 * SCALE, fill=(24, 32, 48, 255))
    pen.ellipse(box(16, 30, 112, 106), fill=(150, 150, 150, 255))  # body
    pen.ellipse(box(26, 40, 60, 98), fill=(36, 36, 40, 255))  # right lung (image left)
    pen.ellipse(box(68, 40, 102, 98), fill=(36, 36, 40, 255))  # left lung
    pen.ellipse(box(56, 84, 72, 100), fill=(235, 235, 235, 255))  # spine
    pen.ellipse(box(76, 52, 96, 72), fill=(220, 60, 60, 255), outline=(255, 210, 80, 255), width=2 * SCALE)  # tumour

    # The codebook: a 3x3 grid of code cells, one highlighted (vector quantization).
    for row in range(3):
        for column in range(3):
            x, y = 8 + column * 9, 6 + row * 9
            highlighted = (row, column) == (1, 2)
            pen.rounded_rectangle(box(x, y, x + 7, y + 7), radius=2 * SCALE,
                                  fill=(255, 210, 80, 255) if highlighted else (90, 140, 220, 255))
    return image.filter(ImageFilter.SMOOTH).resize((SIZE, SIZE), Image.LANCZOS)


if __name__ == "__main__":
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    draw().save(OUTPUT)
    print(f"wrote {OUTPUT}")
