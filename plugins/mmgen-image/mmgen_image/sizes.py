"""Spatial plan shared by the image networks.

Images are square, ``MIN_SIZE`` pixels a side or more, with any number of channels. The networks
halve the side with stride-2 convolutions while it is above 8, or even and above 4 (odd sides round
down, the decoders add the pixel back with ``output_padding``): 8 -> [8, 4], 28 -> [28, 14, 7],
32 -> [32, 16, 8, 4], 20 -> [20, 10, 5], 33 -> [33, 16, 8, 4], 7 -> [7].
"""
MIN_SIZE = 4
SIZES = (8, 28, 32, 64)  # the sizes of the bundled datasets (any size >= MIN_SIZE works)


def check_image(channels: int, size: int) -> None:
    if not isinstance(channels, int) or isinstance(channels, bool) or channels < 1:
        raise ValueError(f"image networks take a positive int number of channels, got {channels!r}")
    if not isinstance(size, int) or isinstance(size, bool) or size < MIN_SIZE:
        raise ValueError(f"image size must be an int >= {MIN_SIZE} (square images), got {size!r}")


def side_plan(size: int) -> list[int]:
    """Sides from ``size`` down to the smallest feature map, e.g. 28 -> [28, 14, 7]."""
    sides = [size]
    while sides[-1] > 8 or (sides[-1] % 2 == 0 and sides[-1] > 4):
        sides.append(sides[-1] // 2)
    return sides


def output_paddings(sides: list[int]) -> list[int]:
    """``output_padding`` of each stride-2 transposed conv (k4, p1) climbing ``sides`` back up:
    1 where the larger side is odd (from s it gives 2s + 1), else 0."""
    return [big % 2 for big in sides[-2::-1]]


def widths(hidden: int, stages: int, cap: int = 256) -> list[int]:
    """Feature widths per downsampling stage: hidden, 2*hidden, ... capped at ``cap``."""
    return [min(hidden * 2 ** i, cap) for i in range(stages)]
