"""Property-based tests (hypothesis): path-part safety, and the builder's joins against a plain reference join on
random metadata trees of both schema generations (with the validator's counts checked on the same trees)."""
import csv
import io
import os
import re
import shutil
import tempfile
import warnings

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import emm1
from emm1_lib.schema.paths import join_media_paths
from emm1_lib.schema.paths import unsafe_mask
from emm1_lib.tools.validate import validate_tree

MODALITIES = ("image", "audio", "video", "points")
PAIRS = [(a, b) for a in MODALITIES for b in MODALITIES if a != b]
SETTINGS = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])


# ---------------------------------------------------------------------------------------------- path parts


def reference_is_unsafe(part: str) -> bool:
    """The documented rule, written plainly: empty, absolute, drive, `~`, a `..` component, a control character."""
    if part == "" or part[0] in "/\\~" or re.match(r"[A-Za-z]:", part):
        return True
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in part):
        return True
    return ".." in re.split(r"[/\\]", part)


path_alphabet = st.sampled_from(list("ab./\\~:C_- \x00\x1f\x7f\n") + ["..", "é", "\u2025", "\uff0e"])
path_parts = st.lists(path_alphabet, max_size=12).map("".join)
# mostly-safe parts (dots, slashes, backslashes, colons: the near misses) so that the "accepted" branch is explored
near_miss_parts = st.lists(st.sampled_from(["a", "b", ".", "/", "\\", ":", "é", "\u2025", ".a", "a.."]),
                           min_size=1, max_size=10).map(lambda x: "a" + "".join(x))


@SETTINGS
@given(path_parts)
def test_unsafe_rule_equals_the_reference(part):
    assert unsafe_mask(pa.array([part]))[0].as_py() == reference_is_unsafe(part)
    dictionary = pa.array([part]).dictionary_encode()
    assert unsafe_mask(dictionary)[0].as_py() == reference_is_unsafe(part)


@SETTINGS
@given(save_folder=st.one_of(near_miss_parts, path_parts), folder=st.sampled_from(MODALITIES),
       file_name=st.one_of(near_miss_parts, path_parts))
def test_accepted_parts_resolve_under_the_root(save_folder, folder, file_name):
    root = "/data/root"
    parts = pa.array([save_folder]), pa.array([file_name])
    assume(not unsafe_mask(parts[0])[0].as_py() and not unsafe_mask(parts[1])[0].as_py())
    [path] = join_media_paths(root, parts[0], folder, parts[1]).to_pylist()
    assert path == f"{root}/{save_folder}/{folder}/{file_name}"  # the README formula, untouched
    normalized = os.path.normpath(path)
    assert normalized.startswith(root + os.sep), (path, normalized)


@SETTINGS
@given(st.lists(path_parts, min_size=1, max_size=20))
def test_unsafe_mask_marks_every_unsafe_part(parts):
    """The rules report the mask's rows (the first one in the builder's error): each must match the reference."""
    assert unsafe_mask(pa.array(parts)).to_pylist() == [reference_is_unsafe(p) for p in parts]


# ---------------------------------------------------------------------------------------------- random trees

ids = st.integers(min_value=0, max_value=2**62)
safe_name = st.text(alphabet="abcXYZ019_-. é", min_size=1, max_size=8).filter(lambda s: not reference_is_unsafe(s))
captions = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)  # quotes, commas, CR, NUL...


@st.composite
def trees(draw):
    """Infos tables (unique sparse ids, some huge) and references, ~1/4 of them dangling."""
    schema = draw(st.sampled_from(["released", "seed"]))
    infos = {}
    for m in ("text",) + MODALITIES:
        keys = draw(st.lists(ids, min_size=1, max_size=8, unique=True))
        if m == "text":
            infos[m] = {k: draw(captions) for k in keys}
        else:
            infos[m] = {k: (draw(st.sampled_from(["shared", "e-mm1_100m_only", "x y"])), draw(safe_name)) for k in keys}

    def ref(m):
        known = sorted(infos[m])
        return draw(st.one_of(st.sampled_from(known), ids))  # mostly known, sometimes dangling

    n = draw(st.integers(min_value=1, max_value=12))
    groups = [{"encord_text_id": ref("text"), **{f"encord_{m}_id": ref(m) for m in MODALITIES}} for _ in range(n)]
    triplets = []
    for _ in range(draw(st.integers(min_value=1, max_value=12))):
        paired, annotated = draw(st.sampled_from(PAIRS))
        triplets.append({"encord_text_id": ref("text"), "paired": paired, "annotated": annotated,
                         "paired_id": ref(paired), "annotated_id": ref(annotated),
                         "annotation": draw(st.integers(1, 3))})
    if draw(st.booleans()) and groups:
        groups.append(dict(groups[0]))  # identical duplicates are kept
    return schema, infos, groups, triplets


def _write(path, header, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        # csv's QUOTE_MINIMAL leaves a lone "\r" unquoted when the line ends in "\n" (a broken file): quote text
        writer = csv.writer(f, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
        writer.writerow(header)
        writer.writerows(rows)


def write_tree(root, schema, infos, groups, triplets):
    p1 = os.path.join(root, "e-mm1_100m" if schema == "released" else "encord_phase_1_dataset")
    p2 = os.path.join(root, "e-mm1_1m" if schema == "released" else "encord_phase_2_dataset")
    for split in (p1, p2):
        _write(os.path.join(split, "infos", "text.csv"), ["encord_text_id", "caption"], sorted(infos["text"].items()))
        for m in MODALITIES:
            if schema == "released":
                header = [f"encord_{m}_id", "source_dataset", "dataset_license", "file_id", "file_name", "save_folder"]
                rows = [[k, "Src", "CC BY 4.0", f"f{k}", fn, sf] for k, (sf, fn) in infos[m].items()]
            else:
                header = [f"encord_{m}_id", "save_folder", "file_name"]
                rows = [[k, sf, fn] for k, (sf, fn) in infos[m].items()]
            _write(os.path.join(split, "infos", f"{m}.csv"), header, rows)
    columns = ["encord_text_id"] + [f"encord_{m}_id" for m in ("video", "audio", "image", "points")]
    header = columns + (["nn_index"] if schema == "released" else [])
    _write(os.path.join(p1, "nn_1", "data_groups.csv"), header,
           [[g[c] for c in columns] + ([1] if schema == "released" else []) for g in groups])
    if schema == "released":
        header = ["encord_text_id", "paired_modality", "annotated_modality", "encord_paired_id", "encord_annotated_id",
                  "annotation"]
        rows = [[t["encord_text_id"], t["paired"], t["annotated"], t["paired_id"], t["annotated_id"], t["annotation"]]
                for t in triplets]
    else:
        header = ["encord_text_id", "modality_1", "modality_2", "annotated_modality"] + \
                 [f"encord_{m}_id" for m in MODALITIES] + ["annotation"]
        rows = []
        for t in triplets:
            by_m = {t["paired"]: t["paired_id"], t["annotated"]: t["annotated_id"]}
            rows.append([t["encord_text_id"], t["paired"], t["annotated"], t["annotated"]]
                        + [by_m.get(m, "") for m in MODALITIES] + [t["annotation"]])
    _write(os.path.join(p2, "triplets.csv"), header, rows)
    _write(os.path.join(p2, "annotation_mapping.csv"), ["annotation", "label"],
           [[1, "Good Match"], [2, "Partial Match"], [3, "Bad Match"]])


def media_path(root, infos, m, item_id):
    if item_id not in infos[m]:
        return None
    save_folder, file_name = infos[m][item_id]
    return f"{root}/{save_folder}/{m}/{file_name}"


def _prepare(root, config):
    builder = emm1.EMM1(config_name=config, data_dir=root, root_data_path=root, decode=False,
                        cache_dir=os.path.join(root, ".cache"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        builder.download_and_prepare()
    return builder.as_dataset(split="train").to_list()


@pytest.fixture
def workdir():
    path = tempfile.mkdtemp(prefix="emm1-prop-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@settings(max_examples=20, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
@given(trees())
def test_joins_equal_the_reference_join(workdir, tree):
    schema, infos, groups, triplets = tree
    root = tempfile.mkdtemp(dir=workdir)
    write_tree(root, schema, infos, groups, triplets)

    rows = _prepare(root, "phase1_nn1")
    assert len(rows) == len(groups)  # nothing dropped, file order kept
    for row, g in zip(rows, groups):
        assert row["encord_text_id"] == g["encord_text_id"] and row["nn_index"] == 1
        assert row["caption"] == infos["text"].get(g["encord_text_id"])
        for m in MODALITIES:
            assert row[f"encord_{m}_id"] == g[f"encord_{m}_id"]
            path = None if row[m] is None else row[m]["path"]  # decode=False: {"bytes": None, "path": ...}
            assert path == media_path(root, infos, m, g[f"encord_{m}_id"])

    rows = _prepare(root, "phase2_triplets")
    assert len(rows) == len(triplets)
    for row, t in zip(rows, triplets):
        assert (row["paired_modality"], row["annotated_modality"]) == (t["paired"], t["annotated"])
        assert (row["encord_paired_id"], row["encord_annotated_id"]) == (t["paired_id"], t["annotated_id"])
        assert row["caption"] == infos["text"].get(t["encord_text_id"])
        assert row["paired_file_path"] == media_path(root, infos, t["paired"], t["paired_id"])
        assert row["annotated_file_path"] == media_path(root, infos, t["annotated"], t["annotated_id"])
        assert row["annotation"] == t["annotation"] - 1
        for m in MODALITIES:
            expected = row["paired_file_path"] if m == t["paired"] else row["annotated_file_path"] \
                if m == t["annotated"] else None
            assert (row[m] or {}).get("path") == expected

    report = validate_tree(root)
    assert report.ok, report.to_text()
    phase1 = report.split("phase1").modalities
    for m in MODALITIES:
        assert phase1[m].dangling == sum(g[f"encord_{m}_id"] not in infos[m] for g in groups)
        dangling_2 = sum((t["paired"] == m and t["paired_id"] not in infos[m])
                         + (t["annotated"] == m and t["annotated_id"] not in infos[m]) for t in triplets)
        assert report.split("phase2").modalities.get(m) is None or \
            report.split("phase2").modalities[m].dangling == dangling_2
    assert phase1["text"].dangling == sum(g["encord_text_id"] not in infos["text"] for g in groups)


# ---------------------------------------------------------------------------------------------- byte-range reads

# Notes of an extra column: commas, quotes and line breaks, and text that looks like a grouping row.
ONE_LINE_PIECES = ["a", "x", "0", "7", ",", '"', " ", "0,0,0,0,0,1,x"]
QUOTING = {"minimal": csv.QUOTE_MINIMAL, "all": csv.QUOTE_ALL, "nonnumeric": csv.QUOTE_NONNUMERIC}
# Byte ranges from one byte (every line its own range) to more than a small file.
shard_sizes = st.one_of(st.integers(min_value=1, max_value=64), st.integers(min_value=1, max_value=600))


@st.composite
def grouping_files(draw, columns, id_values):
    """(bytes, rows) of a grouping CSV with `columns` and an extra `notes` column, in a random dialect; in about
    half of the files, notes may hold line breaks."""
    pieces = ONE_LINE_PIECES + (["\n", "\r\n"] if draw(st.booleans()) else [])
    rows = [[draw(id_values(c)) for c in columns] for _ in range(draw(st.integers(1, 30)))]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=draw(st.sampled_from(["\n", "\r\n"])),
                        quoting=QUOTING[draw(st.sampled_from(sorted(QUOTING)))])
    writer.writerow(list(columns) + ["notes"])
    writer.writerows([row + ["".join(draw(st.lists(st.sampled_from(pieces), max_size=6)))] for row in rows])
    return out.getvalue().encode(), [tuple(row) for row in rows]


def first_odd_quote_line(data: bytes):
    """The documented quote rule, written plainly: the first physical line with an odd number of double quotes."""
    return next((i for i, line in enumerate(data.split(b"\n"), start=1) if line.count(b'"') % 2), None)


def outcome(call):
    """("rows", rows) or ("refused", code, line): what a read gave."""
    from emm1_lib.errors import EMM1DataError

    try:
        return "rows", call()
    except Exception as error:  # noqa: BLE001 - dig the EMM1DataError out of datasets' wrapping
        seen = error
        while seen is not None and not isinstance(seen, EMM1DataError):
            seen = seen.__cause__ or seen.__context__
        if seen is None:
            raise
        return "refused", seen.code, seen.line


IO_COLUMNS = ("encord_text_id", "encord_image_id", "nn_index")


def read_ranges(path, shard_bytes):
    """Every byte range of a grouping file in order, as the builder's streaming reads them (stops at an error)."""
    from emm1_lib.io.tables import byte_ranges, read_csv_range, read_header

    header = read_header(path)
    types = {c: pa.int64() for c in IO_COLUMNS}
    rows = []
    for start, end in byte_ranges(path, shard_bytes):
        table = read_csv_range(path, start, end, header, types)
        if table is not None:
            rows += list(zip(*[table[c].to_pylist() for c in IO_COLUMNS]))
    return rows


@SETTINGS
@given(grouping_files(IO_COLUMNS, lambda c: st.integers(1, 16) if c == "nn_index" else ids),
       shard_sizes, st.sampled_from(["local", "remote"]))
def test_byte_range_reads_equal_the_whole_read(tmp_path_factory, file, shard_bytes, where):
    """Sharded reads of a grouping file equal the whole read and the csv module's rows, or every read refuses the
    file naming the same line: the first with an odd number of quotes (a quoted value spanning lines)."""
    import fsspec

    data, rows = file
    if where == "local":
        path = str(tmp_path_factory.mktemp("ranges") / "data_groups.csv")
        with open(path, "wb") as f:
            f.write(data)
    else:  # not scanned up front: each range checks itself, in file order
        path = f"memory://emm1-ranges/{len(data)}-{shard_bytes}/data_groups.csv"
        with fsspec.open(path, "wb") as f:
            f.write(data)
    whole = outcome(lambda: read_ranges(path, len(data) + 1))
    line = first_odd_quote_line(data)
    assert whole == (("rows", rows) if line is None else ("refused", "quoted_line_break", line))
    assert outcome(lambda: read_ranges(path, shard_bytes)) == whole


BUILDER_COLUMNS = ("encord_text_id", "encord_video_id", "encord_audio_id", "encord_image_id", "encord_points_id",
                   "nn_index")


@pytest.fixture(scope="module")
def grouping_tree(tmp_path_factory):
    from emm1_lib.testing.sample import generate_sample_tree

    return generate_sample_tree(str(tmp_path_factory.mktemp("grouping") / "tree"), media=False, num_neighbours=1,
                                num_captions=30, num_media=6)


def _known_ids(tree, column):
    if column == "nn_index":
        return st.just(1)
    modality = column.split("_")[1]
    path = os.path.join(tree.phase1_dir, "infos", f"{modality}.csv")
    with open(path, newline="", encoding="utf-8") as f:
        known = [int(row[column]) for row in csv.DictReader(f)]
    return st.one_of(st.sampled_from(known), ids)


@settings(max_examples=12, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
@given(data=st.data(), shard_bytes=shard_sizes)
def test_builder_routes_equal_the_whole_read(grouping_tree, workdir, data, shard_bytes):
    """prepare, streaming and num_proc=2 with small byte ranges give the rows of a whole read, or all refuse the file
    with the same line."""
    file, rows = data.draw(grouping_files(BUILDER_COLUMNS, lambda c: _known_ids(grouping_tree, c)))
    path = os.path.join(grouping_tree.phase1_dir, "nn_1", "data_groups.csv")
    with open(path, "wb") as f:
        f.write(file)

    def read(route, size):
        builder = emm1.EMM1(config_name="phase1_nn1", data_dir=grouping_tree.metadata_dir,
                            root_data_path=grouping_tree.root, decode=False, cache_dir=tempfile.mkdtemp(dir=workdir),
                            shard_bytes=size)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if route == "stream":
                found = list(builder.as_streaming_dataset(split="train"))
            else:
                builder.download_and_prepare(num_proc=2 if route == "num_proc" else None)
                found = builder.as_dataset(split="train").to_list()
        return [tuple(r[c] for c in BUILDER_COLUMNS) for r in found]

    whole = outcome(lambda: read("prepare", 1 << 30))
    line = first_odd_quote_line(file)
    assert whole == (("rows", rows) if line is None else ("refused", "quoted_line_break", line))
    for route in ("prepare", "stream", "num_proc"):
        assert outcome(lambda: read(route, shard_bytes)) == whole, route
