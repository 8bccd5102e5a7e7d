"""Spatial plan shared by the image networks: halve the side while it is even and above 4."""
SIZES = (8, 28, 32, 64)
CHANNELS = (1, 3)


def check_image(channels: int, size: int) -> None:
    if channels not in CHANNELS:
        raise ValueError(f"image networks take {' or '.join(map(str, CHANNELS))} channels, got {channels!r}")
    if size not in SIZES:
        raise ValueError(f"image size {size!r} is not supported; accepted sizes: {', '.join(map(str, SIZES))}")


def side_plan(size: int) -> list[int]:
    """Sides from ``size`` down to the smallest feature map, e.g. 28 -> [28, 14, 7]."""
    sides = [size]
    while sides[-1] % 2 == 0 and sides[-1] > 4:
        sides.append(sides[-1] // 2)
    return sides


def widths(hidden: int, stages: int, cap: int = 256) -> list[int]:
    """Feature widths per downsampling stage: hidden, 2*hidden, ... capped at ``cap``."""
    return [min(hidden * 2 ** i, cap) for i in range(stages)]
