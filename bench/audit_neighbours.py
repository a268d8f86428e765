"""The nearest-neighbour search of `tlcli audit` at scale: exact against approximate, side by side
in one run, on feature-like data with planted near-duplicates.

The audit reads every image's 10 nearest other images (cosine distance on unit-length features)
once, for its near-duplicate pairs (distance at most 0.15 x the median nearest distance) and its
outlier score (mean distance to the 10). For each size and feature width this measures, each
method in a fresh process on the same unit-length rows (written once to a scratch .npy, the
library imported before the clock starts):
  - wall and CPU seconds to answer all images (index build included; CPU seconds, summed over
    threads, say more than wall seconds on shared cores), and the peak resident memory the
    search added above the loaded features (VmHWM, reset after loading);
  - recall@10: the share of each queried image's exact 10 nearest that the method returned;
  - near-duplicate pairs: the pairs within the limit among the queried images' neighbours, each
    method with the limit it computes itself (0.15 x its own median nearest distance, as the audit
    does), found / exact, and the pairs it reports that the exact search does not; and the
    planted copies found with their original;
  - lost: images whose answer held neither the image itself nor a copy of it (the search lost its
    way); for `tlcli`, the images it searched again exactly (those, and the outlier section's
    farthest 1,000);
  - the outlier score's largest relative error over the queried images, and at full size whether
    the flagged outliers are the same.
Methods: `brute` (scikit-learn's `NearestNeighbors(algorithm="brute")`, the audit's search for
every size before, and the exact answer here), `ball-tree` (scikit-learn's other exact search),
`faiss-hnsw` and `usearch` (two maintained HNSW graph libraries, alone, at the settings of
tlcli.audit.neighbours), `usearch-f16` (its vectors stored in half precision, distances measured
again in float32) and `tlcli` (tlcli.audit.neighbours as the audit runs it: exact up to 10,000
images, faiss's graph above, the lost and the farthest 1,000 images searched again exactly).
Above --full (default 20,000) images the brute force answers only the queried images, --queries
rows drawn at random plus every planted copy and its original, and its time is that of all images
extrapolated (it is linear in the images queried); such times are marked `~`. The ball tree is
timed on 1,000 queried images at sizes up to --full, extrapolated the same way.

The features: clustered, low-rank and non-negative as pooled CNN features are (a 32-dimensional
mixture of one cluster per 100 images, mapped through a random linear layer to --dims features,
a ReLU and a little noise), with --planted of the rows (0.5 %) replaced by copies of other rows:
half near copies (brighter, with noise at 5 % of the typical nearest distance), half exact copies
three to a group (byte-identical images), which graph indexes are known to handle worst.

`usearch` is not a dependency of tlcli: `pip install usearch` for its rows.

    python bench/audit_neighbours.py                       # 10,000 and 100,000 x 512: ~7 min on 2 cores
    python bench/audit_neighbours.py --dims 2048 --methods brute,ball-tree,faiss-hnsw,tlcli
    python bench/audit_neighbours.py --sizes 1000000 --methods brute,tlcli --planted 0.001 --queries 1000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import checkout_commit, machine, save  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the checkout under test

NEIGHBOURS = 10
SHARE = 0.15  # the audit's near-duplicate limit, a share of the median nearest distance
EXACT = 1e-6
TREE_QUERIES = 1000
METHODS = ("brute", "ball-tree", "faiss-hnsw", "usearch", "usearch-f16", "tlcli")


# ---- the data -------------------------------------------------------------------------------

def feature_like(images: int, dims: int, seed: int = 0, latent: int = 32) -> np.ndarray:
    """Clustered, low-rank, non-negative rows, as a backbone's pooled features are."""
    rng = np.random.default_rng(seed)
    clusters = max(images // 100, 10)
    centres = rng.normal(0, 1, (clusters, latent)).astype(np.float32)
    points = centres[rng.integers(0, clusters, images)] + rng.normal(0, 0.5, (images, latent)).astype(np.float32)
    layer = (rng.normal(0, 1, (latent, dims)) / np.sqrt(latent)).astype(np.float32)
    features = np.maximum(points @ layer + 0.2, 0)
    features += 0.05 * np.abs(rng.normal(0, 1, (images, dims))).astype(np.float32)
    return features


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def exact_rows(units: np.ndarray, queries: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The exact `count` nearest other rows of the queried rows, by blocks of a matrix product."""
    indices, distances = [], []
    for start in range(0, len(queries), 512):
        block = queries[start:start + 512]
        similar = units[block] @ units.T
        similar[np.arange(len(block)), block] = -np.inf
        top = np.argpartition(-similar, count, axis=1)[:, :count]
        order = np.argsort(-np.take_along_axis(similar, top, 1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, 1)
        indices.append(top)
        distances.append(1.0 - np.take_along_axis(similar, top, 1))
    return np.concatenate(indices), np.concatenate(distances)


def plant_copies(features: np.ndarray, share: float, seed: int = 0) -> dict[int, int]:
    """Replace `share` of the rows by copies of others: each copy's row -> its original's."""
    rng = np.random.default_rng(seed + 1)
    units = unit(features)
    sample = rng.choice(len(units), min(1000, len(units)), replace=False)
    typical = float(np.median(exact_rows(units, sample, 1)[1][:, 0]))
    planted = max(int(share * len(features)) // 4 * 4, 4)
    chosen = rng.choice(len(features), planted + planted // 4 * 3, replace=False)
    near, exact_groups = planted // 2, planted // 4
    originals, copies = chosen[:near + exact_groups], chosen[near + exact_groups:]
    copy_of = {}
    # Near copies: brighter, and noise that puts them at 5 % of the typical nearest distance
    # (cosine distance ~ scale^2 / 2 for noise of relative size `scale`).
    scale = np.sqrt(2 * 0.05 * typical)
    for copy, original in zip(copies[:near], originals[:near]):
        noise = rng.normal(0, 1, features.shape[1]).astype(np.float32)
        features[copy] = 1.05 * features[original] + scale * np.linalg.norm(features[original]) * noise / np.linalg.norm(noise)
        copy_of[int(copy)] = int(original)
    for group, original in enumerate(originals[near:]):  # exact copies, two per original
        for copy in copies[near + 2 * group:near + 2 * group + 2]:
            features[copy] = features[original]
            copy_of[int(copy)] = int(original)
    return copy_of


# ---- the methods, each run in a fresh process ----------------------------------------------

def _rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _without_self(indices: np.ndarray, distances: np.ndarray, rows: np.ndarray):
    """Drop each row itself from its answers (where copies tie it need not come first), and
    count the rows whose search lost its way: it found neither the row nor a copy of it."""
    itself = indices == rows[:, None]
    lost = int((~itself.any(axis=1) & (distances[:, 0] > EXACT)).sum())
    itself[~itself.any(axis=1), -1] = True
    shape = (len(rows), NEIGHBOURS)
    return indices[~itself].reshape(shape), distances[~itself].reshape(shape), lost


def search(method: str, units: np.ndarray, rows: np.ndarray, threads: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The NEIGHBOURS nearest other rows of `rows` (cosine distances) by `method`, and how many
    rows it lost (for `tlcli`: searched again exactly)."""
    from tlcli.audit import neighbours

    count = NEIGHBOURS + 1
    if method in ("brute", "ball-tree"):
        from sklearn.neighbors import NearestNeighbors

        # The brute force as the audit calls it (its BLAS uses every thread); the tree's queries in parallel.
        search = (NearestNeighbors(n_neighbors=count, algorithm="brute") if method == "brute"
                  else NearestNeighbors(n_neighbors=count, algorithm="ball_tree", n_jobs=threads))
        euclidean, indices = search.fit(units).kneighbors(units[rows])
        return _without_self(indices, euclidean ** 2 / 2, rows)
    if method == "faiss-hnsw":  # the library alone, at tlcli's settings
        import faiss

        faiss.omp_set_num_threads(threads)
        index = faiss.IndexHNSWFlat(units.shape[1], neighbours.LINKS, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = neighbours.BUILD_BREADTH
        index.add(units)
        index.hnsw.efSearch = neighbours.SEARCH_BREADTH
        similar, indices = index.search(units, count)
        return _without_self(indices, 1.0 - similar, rows)
    if method in ("usearch", "usearch-f16"):  # the same graph's settings
        from usearch.index import Index

        index = Index(ndim=units.shape[1], metric="ip", dtype="f16" if method == "usearch-f16" else "f32",
                      connectivity=neighbours.LINKS, expansion_add=neighbours.BUILD_BREADTH,
                      expansion_search=neighbours.SEARCH_BREADTH)
        index.add(np.arange(len(units)), units, threads=threads)
        found = index.search(units, count, threads=threads)
        indices, distances, lost = _without_self(found.keys.astype(np.int64), found.distances, rows)
        # f16 distances are rounded: measure the returned neighbours again in float32.
        return indices, 1.0 - np.einsum("ij,ikj->ik", units[rows], units[indices]), lost
    if method == "tlcli":  # what `tlcli audit` does: its search, then the outlier section's refinement
        from tlcli.audit.outliers import find_outliers

        found = neighbours.nearest_neighbours(units)
        find_outliers(found)
        return found.indices[rows], found.distances[rows], found.repaired
    raise SystemExit(f"unknown method {method!r}: one of {', '.join(METHODS)}")


LIBRARIES = {"brute": ["sklearn.neighbors"], "ball-tree": ["sklearn.neighbors"], "faiss-hnsw": ["faiss"],
             "usearch": ["usearch.index"], "usearch-f16": ["usearch.index"],
             "tlcli": ["sklearn.neighbors", "faiss", "tlcli.audit.outliers"]}


def worker(method: str, folder: Path, threads: int) -> None:
    import importlib

    for library in LIBRARIES[method]:  # imported before the clock and the memory's baseline
        importlib.import_module(library)
    units = np.load(folder / "units.npy")
    rows = np.load(folder / f"rows-{method}.npy")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM from here on
    baseline = _rss_mb("VmRSS")
    started, cpu = time.perf_counter(), time.process_time()
    indices, distances, lost = search(method, units, rows, threads)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    np.savez(folder / f"found-{method}.npz", indices=indices, distances=distances)
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "memory_mb": _rss_mb("VmHWM") - baseline, "lost": lost}))


def run_method(method: str, folder: Path, rows: np.ndarray, threads: int) -> dict:
    np.save(folder / f"rows-{method}.npy", rows)
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, __file__, "--worker", method, "--folder", str(folder),
                           "--threads", str(threads)], capture_output=True, text=True, env=environment)
    if done.returncode:
        raise SystemExit(f"{method} failed:\n{done.stderr[-3000:]}")
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    found = np.load(folder / f"found-{method}.npz")
    return {**measured, "indices": found["indices"], "distances": found["distances"]}


# ---- what the audit would report from each answer --------------------------------------------

def pairs_within(indices: np.ndarray, distances: np.ndarray, rows: np.ndarray, limit: float) -> set[tuple[int, int]]:
    close = distances <= limit
    firsts = np.repeat(rows, close.sum(axis=1))
    return {(min(a, b), max(a, b)) for a, b in zip(firsts.tolist(), indices[close].tolist())}


def flagged_outliers(scores: np.ndarray) -> set[int]:
    """The audit's rule: log score above median + 3.5 robust standard deviations."""
    logs = np.log(np.maximum(scores, 1e-12))
    median = np.median(logs)
    spread = np.median(np.abs(logs - median))
    return set(np.flatnonzero(logs > median + 3.5 * spread / 0.6745).tolist()) if spread > 0 else set()


def compare(found: dict, exact: dict, queried: np.ndarray, images: int, copy_of: dict[int, int]) -> dict:
    """Recall, pairs and outlier scores of one method's answer against the exact one, on the queried rows."""
    indices, distances = found["indices"], found["distances"]
    full = len(indices) == images
    mine = (indices[queried], distances[queried]) if full else (indices, distances)
    truth_indices, truth_distances = exact["indices"], exact["distances"]
    recall = float(np.mean([len(set(a) & set(b)) / NEIGHBOURS for a, b in zip(mine[0].tolist(), truth_indices.tolist())]))
    truth_limit = exact["limit"]
    # A method that answered every image computes its own limit, as the audit would; the exact
    # search that answered only the queried images takes the limit of the images drawn at random.
    limit = max(SHARE * float(np.median(distances[:, 0])), EXACT) if full else truth_limit
    pairs, truth = pairs_within(*mine, queried, limit), pairs_within(truth_indices, truth_distances, queried, truth_limit)
    planted = {(min(a, b), max(a, b)) for a, b in copy_of.items()}
    all_pairs = pairs_within(indices, distances, np.arange(len(indices)) if full else queried, limit)
    truth_scores, scores = truth_distances.mean(axis=1), mine[1].mean(axis=1)
    row = {"seconds": round(found["seconds"], 2), "cpu_seconds": round(found["cpu_seconds"], 2),
           "memory_mb": round(found["memory_mb"]), "lost": found["lost"],
           "recall_at_10": round(recall, 4), "limit": limit, "pairs_exact": len(truth), "pairs_found": len(pairs & truth),
           "pairs_extra": len(pairs - truth), "planted_copies_found": len(all_pairs & planted),
           "outlier_score_max_error": round(float(np.max(np.abs(scores - truth_scores) / truth_scores)), 4)}
    if full and len(queried) == images:
        ours, theirs = flagged_outliers(distances.mean(axis=1)), flagged_outliers(truth_scores)
        row["outliers"] = f"{len(ours & theirs)} of {len(theirs)} same, {len(ours - theirs)} other"
    return row


def measure(images: int, dims: int, methods: list[str], args) -> list[dict]:
    features = feature_like(images, dims)
    copy_of = plant_copies(features, args.planted)
    units = unit(features)
    del features
    rng = np.random.default_rng(2)
    full = images <= args.full
    planted_rows = np.array(sorted(set(copy_of) | set(copy_of.values())))
    sample = np.arange(images) if full else rng.choice(images, args.queries, replace=False)
    queried = np.union1d(sample, planted_rows)
    rows = []
    with tempfile.TemporaryDirectory(prefix="tlcli-bench-neighbours-") as scratch:
        folder = Path(scratch)
        np.save(folder / "units.npy", units)
        exact = run_method("brute", folder, queried, args.threads)
        # The typical nearest distance of the images drawn at random, not of the planted ones.
        typical = float(np.median(exact["distances"][np.searchsorted(queried, sample), 0]))
        exact["limit"] = max(SHARE * typical, EXACT)
        if not full:  # all images' time, from the queried ones'
            exact["seconds"] *= images / len(queried)
            exact["cpu_seconds"] *= images / len(queried)
        measured = {"brute": exact}
        for method in methods:
            if method == "brute":
                continue
            if method == "ball-tree":
                if not full:
                    continue
                tree_rows = np.sort(rng.choice(images, min(TREE_QUERIES, images), replace=False))
                answer = run_method(method, folder, tree_rows, args.threads)
                answer["seconds"] *= images / len(tree_rows)
                answer["cpu_seconds"] *= images / len(tree_rows)
                position = np.searchsorted(queried, tree_rows)
                measured[method] = {**answer, "tree_rows": tree_rows, "position": position}
                continue
            measured[method] = run_method(method, folder, np.arange(images), args.threads)
        for method in methods:
            if method not in measured:
                continue
            answer = measured[method]
            if method == "ball-tree":
                part = {**exact, "indices": exact["indices"][answer["position"]],
                        "distances": exact["distances"][answer["position"]]}
                row = compare(answer, part, answer["tree_rows"], images, {})
                row = {key: row[key] for key in ("seconds", "cpu_seconds", "memory_mb", "recall_at_10")}
            else:
                row = compare(answer, exact, queried, images, copy_of)
            extrapolated = method == "ball-tree" or (method == "brute" and not full)
            rows.append({"images": images, "dims": dims, "method": method, "extrapolated": extrapolated,
                         "queried": len(queried), "planted_pairs": len(copy_of), **row})
            print(_line(rows[-1]), flush=True)
    return rows


def _line(row: dict) -> str:
    mark = "~" if row["extrapolated"] else ""
    seconds = f"{mark}{row['seconds']:.1f}", f"{mark}{row['cpu_seconds']:.1f}"
    pairs = (f"{row['pairs_found']:>6} of {row['pairs_exact']:<6} +{row['pairs_extra']:<3} "
             f"{row['planted_copies_found']:>5} of {row['planted_pairs']:<5} {row['lost']:>4}" if "pairs_exact" in row
             else f"{'':41}")
    outliers = (f"{row['outlier_score_max_error']:>7.3f} {row.get('outliers', '')}" if "outlier_score_max_error" in row else "")
    return (f"{row['images']:>8} {row['dims']:>5} {row['method']:12} {seconds[0]:>8} {seconds[1]:>8} {row['memory_mb']:>6} "
            f"{row['recall_at_10']:>7.4f} {pairs} {outliers}")


HEADER = (f"{'images':>8} {'dims':>5} {'method':12} {'wall s':>8} {'CPU s':>8} {'MB':>6} {'rec@10':>7} "
          f"{'pairs found of exact, +extra':>28} {'planted found':>13} {'lost':>4} {'outlier err, flagged same'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--dims", default="512")
    parser.add_argument("--methods", default="brute,ball-tree,faiss-hnsw,usearch,tlcli")
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--planted", type=float, default=0.005)
    parser.add_argument("--full", type=int, default=20000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.folder, args.threads)
    methods = args.methods.split(",")
    commit = checkout_commit()
    print(f"nearest-neighbour search for tlcli audit, commit {commit}, load average {os.getloadavg()[0]:.1f}")
    print(HEADER, flush=True)
    rows = [row for dims in map(int, args.dims.split(",")) for images in map(int, args.sizes.split(","))
            for row in measure(images, dims, methods, args)]
    path = save(f"audit_neighbours-{args.sizes}-{args.dims}", {"commit": commit, "machine": machine(), "load_average": os.getloadavg(),
                                     "rows": rows})
    print(f"written to {path}")


if __name__ == "__main__":
    main()
