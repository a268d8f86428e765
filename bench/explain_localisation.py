"""Does `tlcli explain` point where the evidence is, and does it say when it does not? Per method and backbone.

    python bench/explain_localisation.py --part squares   # each method x classic backbone x 32/64/128 px (an hour or more, estimated)
    python bench/explain_localisation.py --part fills     # occlusion's fill: mean colour, blur, or a copy of a plain image
    python bench/explain_localisation.py --part corners   # the quarter-of-the-image check (about 3 minutes)
    python bench/explain_localisation.py --part squares --backbones tinynet --sizes 32,64   # the tests' backbone, seconds

squares: the fine-placement fixture (tests/helpers.write_square_dataset): textured images, the
"patch" class decided by a bright square 7/32 of the image wide anywhere in it; 60 + 60 training
images, 20 + 20 validation, 20 + 20 test. For every backbone (random weights, as nothing can be
downloaded here) and size, a run is trained at default settings and the 20 test patch images are
explained for "patch" by each --method, in batches of 16 as `tlcli explain` does. A hit is a
map whose peak lies within half the square's side of it. Beside the hit rate: the mean
faithfulness score and the share of maps called faithful (the deletion test, tlcli.inference.
faithfulness), and images per second, maps and deletion tests together and maps alone (the best
of --rounds passes after a first, so tracing is excluded). Occlusion is the reference: it asks
the model itself. To see whether the score tells a wrong map from a right one, each map is also
tested moved by half the image (its peak then off the square): the share of those called
faithful is the last column, and the summary pools every row's maps on and off the square.

fills: the same runs, occlusion with each fill. Besides the hit rate, how much each fill misleads:
the drop in log-odds of "patch" when a window over the square is hidden (the evidence removed:
higher is better) against the change when a window clear of the square is hidden (the fill's
own effect: lower is better), and p(patch) once the square is hidden.

corners: the earlier, coarser check: noise images with a bright square in a random corner
(tests/helpers.write_patch_dataset); a hit is a Grad-CAM peak in the square's corner quarter,
against occlusion by quarters. Chance is 1 in 4.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from common import checkout_commit, machine, save  # noqa: E402
from helpers import invoke, peak_on_square, write_patch_dataset, write_square_dataset  # noqa: E402

CORNER_SIZES = {"vgg16": 128, "resnet50": 128, "inceptionv3": 171, "xception": 128}
CLASSIC = ("vgg16", "resnet50", "inceptionv3", "xception")
METHODS = ("gradcam", "occlusion", "auto")
SPLITS = {"train": 60, "val": 20, "test": 20}
BATCH = 16  # `tlcli explain`'s default --batch-size


def square_run(name: str, size: int, root: Path):
    """(model, run info, test patch images, their squares, test plain images) of a run trained on
    the fine-placement fixture."""
    from PIL import Image

    from tlcli.models.saved import load_run_model

    folder = root / f"{name}-{size}"
    data, run, written = folder / "data", folder / "run", folder / "squares.json"
    if not run.exists():  # the fills part reuses the squares part's run
        written.parent.mkdir(parents=True, exist_ok=True)
        written.write_text(json.dumps(write_square_dataset(data, SPLITS, size)))
        invoke("train", data, "--model", name, "--weights", "none", "--image-size", size, "--quiet", "--out", run)
    squares = json.loads(written.read_text())
    model, info = load_run_model(run)

    def read(folder: Path) -> np.ndarray:
        return np.stack([np.asarray(Image.open(folder / f"{index}.png").convert("RGB"), np.float32)
                         for index in range(SPLITS["test"])])

    boxes = [tuple(squares[str(data / "test" / "patch" / f"{index}.png")]) for index in range(SPLITS["test"])]
    return model, info, read(data / "test" / "patch"), boxes, read(data / "test" / "plain")


def explain_all(explainer, images: np.ndarray, target: int) -> tuple[list, list]:
    """Every image's map and deletion test, in batches as `tlcli explain` makes them."""
    heatmaps, tests = [], []
    for start in range(0, len(images), BATCH):
        batch = images[start:start + BATCH]
        _, (maps,), (found,) = explainer(batch, [[target] * len(batch)])
        heatmaps += maps
        tests += found
    return heatmaps, tests


def _best_time(work, rounds: int) -> float:
    """The shortest of `rounds` runs of `work()`, in seconds: the machine is shared."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def measure_methods(name: str, size: int, root: Path, rounds: int = 2, methods=METHODS) -> list[dict]:
    from tlcli.inference.explain import Explainer
    from tlcli.inference.heatmaps import Heatmap

    model, info, images, squares, _ = square_run(name, size, root)
    patch = info.class_names.index("patch")
    rows = []
    for method in methods:
        explainer = Explainer(model, size, method=method)
        started = time.perf_counter()
        heatmaps, tests = explain_all(explainer, images, patch)  # traced now, and auto has chosen
        first = time.perf_counter() - started
        seconds = _best_time(lambda: explain_all(explainer, images, patch), rounds) if rounds else first
        draw = explainer.gradcam if explainer.method == "gradcam" else explainer.occlusion
        drawing = _best_time(lambda: [draw(images[start:start + BATCH], [patch] * len(images[start:start + BATCH]))
                                      for start in range(0, len(images), BATCH)], rounds) if rounds else first
        hits = [peak_on_square(heatmap.peak(size, size), square) for heatmap, square in zip(heatmaps, squares)]
        moved = [Heatmap(heatmap.class_index, heatmap.probability,
                         np.roll(heatmap.values, np.array(heatmap.values.shape) // 2, axis=(0, 1)))
                 for heatmap in heatmaps]  # wrong maps, for the score to tell apart
        moved_tests = explainer.test(images, moved)
        moved_hits = [peak_on_square(heatmap.peak(size, size), square) for heatmap, square in zip(moved, squares)]
        every = list(zip(tests + moved_tests, hits + moved_hits))  # drawn and moved maps: on the square or not
        rows.append({
            "backbone": name, "image_size": size, "method": method, "drawn_by": explainer.method,
            "reason": explainer.reason, "grid": list(heatmaps[0].values.shape), "images": len(images),
            "hits": int(sum(hits)), "faithfulness": round(float(np.mean([test.score or 0.0 for test in tests])), 3),
            "faithful": int(sum(test.faithful for test in tests)),
            "faithfulness_on": _mean([test.score or 0.0 for test, hit in zip(tests, hits) if hit]),
            "faithfulness_off": _mean([test.score or 0.0 for test, hit in zip(tests, hits) if not hit]),
            "all_maps_on": [int(sum(hit for _, hit in every)), int(sum(test.faithful for test, hit in every if hit))],
            "all_maps_off": [int(sum(not hit for _, hit in every)),
                             int(sum(test.faithful for test, hit in every if not hit))],
            "moved_faithfulness": _mean([test.score or 0.0 for test in moved_tests]),
            "moved_faithful": int(sum(test.faithful for test in moved_tests)),
            "images_per_second": round(len(images) / seconds, 2),
            "maps_per_second": round(len(images) / drawing, 2),  # without the deletion test
            "predicted_patch": int(sum(test.probability > 0.5 for test in tests)),
        })
    return rows


def _mean(values: list[float]) -> float | None:
    return round(float(np.mean(values)), 3) if values else None


def blur_fill(images: np.ndarray, geometry) -> np.ndarray:
    """Each image blurred by a Gaussian a quarter of the window wide."""
    from scipy.ndimage import gaussian_filter

    sigma = geometry.window_pixels / 4
    return gaussian_filter(images, sigma=(0, sigma, sigma, 0), mode="reflect")


def measure_fills(name: str, size: int, root: Path) -> list[dict]:
    from tlcli.inference.occlusion import Occlusion, hidden, log_odds, mean_fill

    model, info, images, squares, plains = square_run(name, size, root)
    patch = info.class_names.index("patch")
    fills = {"mean colour": mean_fill, "blur": blur_fill,
             "copy of a plain image": lambda batch, geometry: np.broadcast_to(plains[0], batch.shape)}
    rng = np.random.default_rng(1)
    rows = []
    for fill_name, fill in fills.items():
        occlusion = Occlusion(model, size, fill=fill)
        _, heatmaps = occlusion(images, [patch] * len(images))
        window = occlusion.geometry.window_pixels
        on, clear = [], []
        for image, filled, (top, left, side) in zip(images, occlusion.fills(images), squares):
            corner = [min(max(0, centre - window // 2), size - window) for centre in (top + side // 2, left + side // 2)]
            on.append(hidden(image, filled, [_window(corner, window)])[0])
            away = _clear_corner(rng, size, window, (top, left, side))
            clear.append(hidden(image, filled, [_window(away, window)])[0] if away is not None else image)

        def scores(batch):
            return log_odds(occlusion.predict(np.stack(batch)), np.full(len(batch), patch), False)

        base = scores(list(images))
        evidence, elsewhere = base - scores(on), np.abs(base - scores(clear))
        rows.append({
            "backbone": name, "image_size": size, "fill": fill_name, "window": window, "images": len(images),
            "hits": int(sum(peak_on_square(heatmap.peak(size, size), square)
                            for heatmap, square in zip(heatmaps, squares))),
            "drop_square_hidden": round(float(np.median(evidence)), 2),
            "change_clear_of_it": round(float(np.median(elsewhere)), 2),
            "p_patch_square_hidden": round(float(occlusion.predict(np.stack(on))[:, patch].mean()), 3),
        })
    return rows


def _window(corner, window: int) -> tuple[slice, slice]:
    return slice(corner[0], corner[0] + window), slice(corner[1], corner[1] + window)


def _clear_corner(rng, size: int, window: int, square) -> list[int] | None:
    """A random window's top-left corner that does not touch the square, if one is found."""
    top, left, side = square
    for _ in range(200):
        row, column = (int(value) for value in rng.integers(0, size - window + 1, 2))
        if row >= top + side or row + window <= top or column >= left + side or column + window <= left:
            return [row, column]
    return None


def occlusion_corners(model, images: np.ndarray, patch: int, seed: int = 0) -> list[tuple[int, int]]:
    """For each image, the (bottom, right) quarter whose replacement by noise lowers the
    patch class's score the most."""
    rng = np.random.default_rng(seed)
    half = images.shape[1] // 2

    def scores(batch):
        log_p = np.log(np.clip(np.asarray(model(batch, training=False)), 1e-12, 1))
        return log_p[:, patch] - log_p[:, 1 - patch]

    base = scores(images)
    drops = []
    for bottom in (0, 1):
        for right in (0, 1):
            occluded = images.copy()
            rows, columns = slice(bottom * half, bottom * half + half), slice(right * half, right * half + half)
            occluded[:, rows, columns] = rng.integers(0, 100, occluded[:, rows, columns].shape)
            drops.append(base - scores(occluded))
    best = np.argmax(np.stack(drops, axis=1), axis=1)
    return [divmod(int(quarter), 2) for quarter in best]


def measure_corners(name: str, size: int, root: Path, per_class: int = 16) -> dict:
    from PIL import Image

    from tlcli.models.saved import load_run_model

    data, run = root / name / "data", root / name / "run"
    corners = write_patch_dataset(data, {"train": per_class, "val": per_class // 2, "test": per_class}, size)
    invoke("train", data, "--model", name, "--weights", "none", "--image-size", size, "--quiet", "--out", run)
    records = json.loads(invoke("explain", run, data / "test" / "patch", "--class", "patch", "--method", "gradcam",
                                "--json", "--out", root / name / "maps").stdout)
    model, info = load_run_model(run)
    paths = [record["path"] for record in records]
    images = np.stack([np.asarray(Image.open(path).convert("RGB"), np.float32) for path in paths])
    occluded = occlusion_corners(model, images, info.class_names.index("patch"))
    truth = [corners[path] for path in paths]
    half = size / 2
    peaks = [(record["peak"]["y"] >= half, record["peak"]["x"] >= half) if record["peak"] else None
             for record in records]
    return {
        "backbone": name, "image_size": size, "grid": records[0]["grid"], "images": len(records),
        "gradcam_hits": sum(peak == corner for peak, corner in zip(peaks, truth)),
        "occlusion_hits": sum(tuple(map(bool, found)) == corner for found, corner in zip(occluded, truth)),
        "agree": sum(peak == tuple(map(bool, found)) for peak, found in zip(peaks, occluded)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("squares", "fills", "corners"), default="squares")
    parser.add_argument("--backbones", default=",".join(CLASSIC), help="also 'tinynet', the tests' backbone")
    parser.add_argument("--sizes", default="32,64,128", help="squares and fills (corners: --image-size)")
    parser.add_argument("--image-size", type=int, help=f"corners: one size for every backbone (default: {CORNER_SIZES})")
    parser.add_argument("--rounds", type=int, default=2,
                        help="squares: timed passes, the best kept; 0 times the first pass (tracing and auto's "
                             "choice included; maps alone not timed apart)")
    parser.add_argument("--methods", default=",".join(METHODS), help="squares: the --method values to measure")
    arguments = parser.parse_args()
    if "tinynet" in arguments.backbones:
        import tiny_backbone

        tiny_backbone.register()
    from tlcli.models.backbones import BACKBONES

    commit = checkout_commit()
    print(f"commit {commit} (plus uncommitted changes, if any)", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in arguments.backbones.split(","):
            if arguments.part == "corners":
                rows.append(measure_corners(name, arguments.image_size or CORNER_SIZES[name], Path(scratch)))
                print(json.dumps(rows[-1]), flush=True)
                continue
            for size in (int(size) for size in arguments.sizes.split(",")):
                if size < BACKBONES[name].min_size:
                    print(f"{name} {size} px: below its minimum ({BACKBONES[name].min_size} px), left out", flush=True)
                    continue
                rows_of = (measure_methods(name, size, Path(scratch), arguments.rounds, arguments.methods.split(",")) if arguments.part == "squares"
                           else measure_fills(name, size, Path(scratch)))
                for row in rows_of:
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    _print_table(arguments.part, rows)
    suffix = {"squares": "", "fills": "_fills", "corners": "_corners"}[arguments.part]
    print(f"wrote {save('explain_localisation' + suffix, {'machine': machine(), 'commit': commit, 'rows': rows})}")


def _print_table(part: str, rows: list[dict]) -> None:
    """The rows as the Markdown table bench/README.md shows."""
    if part == "squares":
        print("| backbone | image size | method | drawn by | map | peak on the square | mean faithfulness "
              "(on / off the square) | faithful | images/s (maps alone) | moved maps: faithful |\n"
              "|---|---|---|---|---|---|---|---|---|---|")
        for row in rows:
            on_off = " / ".join("-" if value is None else f"{value:.2f}"
                                for value in (row["faithfulness_on"], row["faithfulness_off"]))
            print(f"| {row['backbone']} | {row['image_size']} | {row['method']} | {row['drawn_by']} | "
                  f"{row['grid'][0]} x {row['grid'][1]} | {row['hits']} / {row['images']} | "
                  f"{row['faithfulness']:.2f} ({on_off}) | {row['faithful']} / {row['images']} | "
                  f"{row['images_per_second']:.3g} ({row['maps_per_second']:.3g}) | "
                  f"{row['moved_faithful']} / {row['images']} ({row['moved_faithfulness']:.2f}) |")
        drawn = [row for row in rows if row["method"] != "auto"]  # auto's maps are one of the others'
        on, off = (np.sum([row[key] for row in drawn], axis=0) for key in ("all_maps_on", "all_maps_off"))
        print(f"called faithful, of every gradcam and occlusion map, drawn or moved: {on[1]} of the {on[0]} whose peak is on the square "
              f"({on[1] / max(on[0], 1):.0%}), {off[1]} of the {off[0]} whose peak is not ({off[1] / max(off[0], 1):.0%})")
    elif part == "fills":
        print("| backbone | image size | fill | peak on the square | drop, square hidden | change, clear of it | "
              "ratio | p(patch), square hidden |\n|---|---|---|---|---|---|---|---|")
        for row in rows:
            print(f"| {row['backbone']} | {row['image_size']} | {row['fill']} | {row['hits']} / {row['images']} | "
                  f"{row['drop_square_hidden']:.2f} | {row['change_clear_of_it']:.2f} | "
                  f"{row['drop_square_hidden'] / row['change_clear_of_it']:.1f} | {row['p_patch_square_hidden']:.2f} |")
    else:
        print("| backbone | image size | map | Grad-CAM | occlusion | agree |\n|---|---|---|---|---|---|")
        for row in rows:
            print(f"| {row['backbone']} | {row['image_size']} | {row['grid'][0]} x {row['grid'][1]} | "
                  f"{row['gradcam_hits']} / {row['images']} | {row['occlusion_hits']} / {row['images']} | "
                  f"{row['agree']} / {row['images']} |")


if __name__ == "__main__":
    main()
