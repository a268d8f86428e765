from __future__ import annotations

from tlcli.commands._options import Json
from tlcli.console import literal, out, print_json
from tlcli.models.backbones import BACKBONES, MAX_FEATURE_MAP_BYTES, cached_weights_path, keras_cache_dir

NAME = "models"


def run(as_json: Json = False) -> None:
    """List the backbones: sizes, preprocessing, blocks, and whether ImageNet weights are cached."""
    rows = []
    for spec in BACKBONES.values():
        cached = cached_weights_path(spec)
        rows.append(
            {
                "name": spec.name,
                "keras_name": spec.display_name,
                "classic": spec.classic,
                "default_size": spec.default_size,
                "min_size": spec.min_size,
                "max_size": spec.max_size,
                "feature_size": spec.feature_size,
                "preprocessing": spec.preprocessing,
                "preprocessing_in_backbone": spec.preprocessing_in_backbone,
                "blocks": list(spec.block_names),
                "explain_layer": spec.last_conv_layer or "(the backbone's output)",
                "imagenet_weights_cached": cached is not None,
                "weights_file": str(keras_cache_dir() / spec.weights_file),
            }
        )
    if as_json:
        print_json(rows)
        return

    from rich.table import Table

    table = Table(title="Backbones (keras.applications)")
    # Names never truncated (a user types them); preprocessing and blocks wrap in a narrow terminal.
    table.add_column("model", no_wrap=True, min_width=max(len(row["name"]) for row in rows) + 2)
    for column in ("size", "min", "features"):
        table.add_column(column, no_wrap=True)
    table.add_column("preproc")
    table.add_column("blocks", overflow="fold")
    table.add_column("ImageNet", no_wrap=True)
    for row in rows:
        blocks = row["blocks"]
        table.add_row(
            f"[bold]{row['name']}[/]" + (" *" if row["classic"] else ""),
            str(row["default_size"]),
            str(row["min_size"]),
            str(row["feature_size"]),
            row["preprocessing"] + (" (m)" if row["preprocessing_in_backbone"] else ""),
            f"{blocks[0]}..{blocks[-1]}",
            "[green]cached[/]" if row["imagenet_weights_cached"] else "not cached",
        )
    out.print(table)
    out.print("* the classic four, which tlcli is built around and tests in full; the others are newer backbones.")
    out.print(
        "Preprocessing (inside every model tlcli builds, so models take RGB pixels in [0, 255]): "
        "caffe = RGB to BGR minus the ImageNet channel means; tf = scaled to [-1, 1]; torch = scaled to "
        "[0, 1], minus the ImageNet means, over their standard deviations. (m) = by the Keras "
        "application's own first layers, once."
    )
    out.print(
        "Largest --image-size: " + ", ".join(f"{row['name']} {row['max_size']}" for row in rows)
        + f" (one image's largest feature map within {MAX_FEATURE_MAP_BYTES // 2**20} MiB)."
    )
    out.print(f"ImageNet weights cache: {literal(keras_cache_dir())}")
