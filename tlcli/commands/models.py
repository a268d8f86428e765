from __future__ import annotations

from tlcli.commands._options import Json
from tlcli.console import literal, out, print_json
from tlcli.models.backbones import BACKBONES, MAX_FEATURE_MAP_BYTES, cached_weights_path, keras_cache_dir

NAME = "models"


def run(as_json: Json = False) -> None:
    """List the four backbones: sizes, preprocessing, blocks, and whether ImageNet weights are cached."""
    rows = []
    for spec in BACKBONES.values():
        cached = cached_weights_path(spec)
        rows.append(
            {
                "name": spec.name,
                "keras_name": spec.display_name,
                "default_size": spec.default_size,
                "min_size": spec.min_size,
                "max_size": spec.max_size,
                "feature_size": spec.feature_size,
                "preprocessing": spec.preprocessing,
                "blocks": list(spec.block_names),
                "explain_layer": spec.last_conv_layer,
                "imagenet_weights_cached": cached is not None,
                "weights_file": str(keras_cache_dir() / spec.weights_file),
            }
        )
    if as_json:
        print_json(rows)
        return

    from rich.table import Table

    table = Table(title="Backbones (keras.applications)")
    for column in ("model", "size", "min", "features", "preproc", "blocks", "ImageNet"):
        table.add_column(column, no_wrap=True)
    for row in rows:
        blocks = row["blocks"]
        table.add_row(
            f"[bold]{row['name']}[/]",
            str(row["default_size"]),
            str(row["min_size"]),
            str(row["feature_size"]),
            row["preprocessing"],
            f"{blocks[0]}..{blocks[-1]}",
            "[green]cached[/]" if row["imagenet_weights_cached"] else "not cached",
        )
    out.print(table)
    out.print(
        "Preprocessing (inside every model tlcli builds, so models take RGB pixels in [0, 255]): "
        "caffe = RGB to BGR minus the ImageNet channel means; tf = scaled to [-1, 1]."
    )
    out.print(
        "Largest --image-size: " + ", ".join(f"{row['name']} {row['max_size']}" for row in rows)
        + f" (one image's largest feature map within {MAX_FEATURE_MAP_BYTES // 2**20} MiB)."
    )
    out.print(f"ImageNet weights cache: {literal(keras_cache_dir())}")
