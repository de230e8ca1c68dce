"""The pre-joined Parquet generation (the official Hub copy): same output as the CSV generations, columns by role.

One sample's data is written in the three generations: the released CSVs, the seed draft's CSVs (converted from
the released ones here) and the pre-joined Parquet (`generate_sample_tree(schema="hub")` joins the released tree
of the same seed). Order: phase 1 keeps the grouping files' row order in every generation, so outputs are compared
row for row; phase 2's Hub copy splits the triplets into one file per modality pair, so the triplet files' order
is lost and phase 2 is compared as a multiset of rows.
"""
import collections
import json
import os
import shutil
import warnings

import datasets
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from datasets.distributed import split_dataset_by_node

import emm1
from emm1_lib.errors import DanglingIdWarning
from emm1_lib.errors import EMM1DataError
from emm1_lib.errors import MissingRoleWarning
from emm1_lib.schema.layout import MODALITIES
from emm1_lib.schema.layout import PROVENANCE_COLUMNS
from emm1_lib.testing.sample import generate_sample_tree
from emm1_lib.tools.cli import main as emm1_main
from emm1_lib.tools.export import export_hub
from emm1_lib.tools.validate import validate_tree

ROOT = "/data/e-mm1"  # paths are only joined (decode=False): no media files needed
SAMPLE = dict(num_captions=30, num_media=6, num_triplets=80, dangling=2, duplicate_groups=2, media=False, seed=3)
PROVENANCE = [f"{m}_{c}" for m in MODALITIES for c in PROVENANCE_COLUMNS]


# ---------------------------------------------------------------------------------------------- the generations


def _read_csv(path):
    return pacsv.read_csv(path)


def _write_csv(table, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pacsv.write_csv(table, path)


def released_to_seed(released, out):
    """The seed draft's CSVs holding the released tree's data: minimal infos, no nn_index, long-format triplets."""
    metadata = os.path.join(out, "metadata")
    phase1, phase2 = os.path.join(metadata, "encord_phase_1_dataset"), os.path.join(metadata, "encord_phase_2_dataset")
    for source, target in ((released.phase1_dir, phase1), (released.phase2_dir, phase2)):
        os.makedirs(os.path.join(target, "infos"))
        shutil.copy(os.path.join(source, "infos", "text.csv"), os.path.join(target, "infos", "text.csv"))
        for m in MODALITIES:
            infos = _read_csv(os.path.join(source, "infos", f"{m}.csv"))
            _write_csv(infos.select([f"encord_{m}_id", "save_folder", "file_name"]), os.path.join(target, "infos", f"{m}.csv"))
    for name in os.listdir(released.phase1_dir):
        if name.startswith("nn_"):
            groups = _read_csv(os.path.join(released.phase1_dir, name, "data_groups.csv"))
            _write_csv(groups.drop_columns(["nn_index"]), os.path.join(phase1, name, "data_groups.csv"))
    triplets = _read_csv(os.path.join(released.phase2_dir, "triplets.csv"))
    columns = {"encord_text_id": triplets["encord_text_id"], "modality_1": triplets["paired_modality"],
               "modality_2": triplets["annotated_modality"], "annotated_modality": triplets["annotated_modality"]}
    for m in MODALITIES:
        none = pa.scalar(None, pa.int64())
        columns[f"encord_{m}_id"] = pc.if_else(pc.equal(triplets["paired_modality"], m), triplets["encord_paired_id"],
                                               pc.if_else(pc.equal(triplets["annotated_modality"], m),
                                                          triplets["encord_annotated_id"], none))
    columns["annotation"] = triplets["annotation"]
    _write_csv(pa.table(columns), os.path.join(phase2, "triplets.csv"))
    shutil.copy(os.path.join(released.phase2_dir, "annotation_mapping.csv"), os.path.join(phase2, "annotation_mapping.csv"))
    return metadata


@pytest.fixture(scope="module")
def generations(tmp_path_factory):
    base = tmp_path_factory.mktemp("generations")
    released = generate_sample_tree(str(base / "released"), schema="released", **SAMPLE)
    hub = generate_sample_tree(str(base / "hub"), schema="hub", **SAMPLE)
    return {"released": released.metadata_dir, "seed": released_to_seed(released, str(base / "seed")),
            "hub": hub.metadata_dir, "hub_tree": hub}


def prepare(data_dir, config, cache_dir, num_proc=None, **kwargs):
    builder = emm1.EMM1(config_name=config, data_dir=data_dir, root_data_path=ROOT, decode=False,
                        cache_dir=str(cache_dir), **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DanglingIdWarning)
        builder.download_and_prepare(num_proc=num_proc)
    return builder.as_dataset(split="train")


def rows(ds_or_table):
    """The rows as a multiset (order-insensitive comparison)."""
    table = ds_or_table.data.table if isinstance(ds_or_table, datasets.Dataset) else ds_or_table
    return collections.Counter(json.dumps(row, sort_keys=True, default=str) for row in table.to_pylist())


def hub_copy(generations, tmp_path):
    """A writable copy of the pre-joined tree's metadata folder."""
    out = tmp_path / "hub-copy"
    shutil.copytree(generations["hub"], out)
    return out


def rewrite(path, change):
    table = pq.read_table(path)
    pq.write_table(change(table), path)


# ---------------------------------------------------------------------------------------------- equal outputs


@pytest.mark.parametrize("config", ["phase1_nn1", "phase1_nn16", "phase1_all", "phase2_triplets"])
def test_three_generations_give_the_same_output(generations, tmp_path, config):
    out = {g: prepare(generations[g], config, tmp_path / g) for g in ("released", "seed", "hub")}
    released, seed, hub = out["released"], out["seed"], out["hub"]
    assert hub.features == released.features == seed.features
    assert len(released) > 0
    if config.startswith("phase1"):
        assert hub.data.table.equals(released.data.table)  # row for row
        # the draft has no provenance columns: null there, every other column equal row for row
        others = [c for c in released.column_names if c not in PROVENANCE]
        assert seed.select_columns(others).data.table.equals(released.select_columns(others).data.table)
        assert all(seed.data.table[c].null_count == len(seed) for c in PROVENANCE)
        assert released.data.table["image_source_dataset"].null_count < len(released)
    else:
        assert rows(hub) == rows(released)  # the Hub copy splits the triplets by modality pair
        assert seed.data.table.equals(released.data.table)


def test_phase2_filters_give_the_same_rows(generations, tmp_path):
    for kwargs in ({"modalities": ["image", "points"]}, {"annotations": ["Good Match", 3]}):
        hub = prepare(generations["hub"], "phase2_triplets", tmp_path / "hub", **kwargs)
        released = prepare(generations["released"], "phase2_triplets", tmp_path / "released", **kwargs)
        assert 0 < len(hub) < 80 and rows(hub) == rows(released), kwargs


def test_provenance_labels_name_the_values_of_the_files(generations, tmp_path):
    hub = prepare(generations["hub"], "phase1_nn1", tmp_path / "hub", provenance_labels=True)
    released = prepare(generations["released"], "phase1_nn1", tmp_path / "released")
    feature = hub.features["audio_dataset_license"]
    assert isinstance(feature, datasets.ClassLabel)
    assert [None if v is None else feature.int2str(v) for v in hub["audio_dataset_license"]] == released["audio_dataset_license"]


@pytest.mark.parametrize("where", ["metadata", "repo", "data"])
def test_data_dir_may_be_the_parent_the_repository_or_its_data_folder(generations, tmp_path, where):
    tree = generations["hub_tree"]
    phase1 = {"metadata": tree.metadata_dir, "repo": tree.phase1_dir, "data": os.path.join(tree.phase1_dir, "data")}[where]
    phase2 = {"metadata": tree.metadata_dir, "repo": tree.phase2_dir, "data": os.path.join(tree.phase2_dir, "data")}[where]
    reference = prepare(generations["released"], "phase1_nn1", tmp_path / "released")
    assert prepare(phase1, "phase1_nn1", tmp_path / "hub1").data.table.equals(reference.data.table)
    # annotation_mapping.csv sits in the repository root, above data/: found from either
    triplets = prepare(phase2, "phase2_triplets", tmp_path / "hub2")
    assert rows(triplets) == rows(prepare(generations["released"], "phase2_triplets", tmp_path / "released2"))


def test_neither_generation_names_every_place_tried(tmp_path):
    with pytest.raises(EMM1DataError, match=r"no 'nn_1/data_groups.csv' found") as error:
        prepare(str(tmp_path), "phase1_nn1", tmp_path / "cache")
    assert "nn_01.parquet" in str(error.value) and "E-MM1-100M" in str(error.value)


def test_a_missing_neighbour_file_is_named(generations, tmp_path):
    copy = hub_copy(generations, tmp_path)
    os.remove(copy / "E-MM1-100M" / "data" / "nn_09.parquet")
    assert len(prepare(str(copy), "phase1_nn1", tmp_path / "nn1")) > 0
    with pytest.raises(EMM1DataError, match=r"phase1_all: .*nn_09.parquet not found") as error:
        prepare(str(copy), "phase1_all", tmp_path / "all")
    assert error.value.code == "missing_file"


# ---------------------------------------------------------------------------------------------- column roles


def _prefix_style(table):
    """`{modality}_{column}` names, mixed case: `image_file_name`, `Image_Save_Folder`, `text_encord_id`."""
    names = []
    for name in table.column_names:
        for m in MODALITIES:
            if name == f"encord_{m}_id":
                name = f"{m}_encord_id"
            elif name.endswith(f"_{m}"):
                field = name[: -len(m) - 1]
                name = f"{m.capitalize()}_{field.title()}" if field == "save_folder" else f"{m}_{field}"
        names.append({"encord_text_id": "text_encord_id", "caption": "Caption"}.get(name, name))
    return table.rename_columns(names)


def _role_style(pair):
    """Phase 2 named by role (`file_name_paired`, `encord_annotated_id`), explicit modality columns, integer codes."""
    paired, annotated = pair

    def change(table):
        names = []
        for name in table.column_names:
            for role, m in (("paired", paired), ("annotated", annotated)):
                if name == f"encord_{m}_id":
                    name = f"encord_{role}_id"
                elif name.endswith(f"_{m}"):
                    name = f"{name[: -len(m) - 1]}_{role}"
            names.append(name)
        table = table.rename_columns(names)
        codes = pc.index_in(table["annotation"], value_set=pa.array(["Good Match", "Partial Match", "Bad Match"]))
        table = table.set_column(table.column_names.index("annotation"), "annotation", pc.add(codes, 1))
        n = table.num_rows
        return table.append_column("paired_modality", pa.array([paired] * n)).append_column(
            "annotated_modality", pa.array([annotated] * n))

    return change


def test_both_naming_styles_give_the_same_output(generations, tmp_path):
    copy = hub_copy(generations, tmp_path)
    rewrite(copy / "E-MM1-100M" / "data" / "nn_01.parquet", _prefix_style)
    data2 = copy / "E-MM1-1M" / "data"
    for name in os.listdir(data2):
        rewrite(data2 / name, _role_style(tuple(name[: -len(".parquet")].split("_to_"))))
    assert "image_file_name" in pq.read_schema(copy / "E-MM1-100M" / "data" / "nn_01.parquet").names
    assert "file_name_paired" in pq.read_schema(data2 / "audio_to_image.parquet").names
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingRoleWarning)  # every role found: no warning
        nn1 = prepare(str(copy), "phase1_nn1", tmp_path / "nn1")
        triplets = prepare(str(copy), "phase2_triplets", tmp_path / "triplets")
    assert nn1.data.table.equals(prepare(generations["hub"], "phase1_nn1", tmp_path / "ref1").data.table)
    assert rows(triplets) == rows(prepare(generations["hub"], "phase2_triplets", tmp_path / "ref2"))


def test_missing_optional_roles_are_null_with_one_warning(generations, tmp_path):
    copy = hub_copy(generations, tmp_path)
    dropped = ["encord_text_id", "source_dataset_image", "dataset_license_audio", "encord_video_id"]
    rewrite(copy / "E-MM1-100M" / "data" / "nn_01.parquet", lambda t: t.drop_columns(dropped))
    builder = emm1.EMM1(config_name="phase1_nn1", data_dir=str(copy), root_data_path=ROOT, decode=False,
                        cache_dir=str(tmp_path / "cache"))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        builder.download_and_prepare()
    [warning] = [w for w in record if issubclass(w.category, MissingRoleWarning)]
    for name in dropped:
        assert name in str(warning.message)
    ds = builder.as_dataset(split="train")
    reference = prepare(generations["hub"], "phase1_nn1", tmp_path / "ref")
    for column in ("encord_text_id", "image_source_dataset", "audio_dataset_license", "encord_video_id"):
        assert ds.data.table[column].null_count == len(ds)
    kept = [c for c in ds.column_names
            if c not in ("encord_text_id", "image_source_dataset", "audio_dataset_license", "encord_video_id")]
    assert ds.select_columns(kept).data.table.equals(reference.select_columns(kept).data.table)


def test_an_unrecognised_layout_lists_the_columns_and_the_roles(generations, tmp_path):
    copy = hub_copy(generations, tmp_path)
    path = copy / "E-MM1-100M" / "data" / "nn_01.parquet"
    pq.write_table(pa.table({"prompt": ["a dog"], "img": ["x.jpg"]}), path)
    with pytest.raises(EMM1DataError) as error:
        prepare(str(copy), "phase1_nn1", tmp_path / "cache")
    message = str(error.value)
    assert error.value.code == "missing_column" and error.value.file == str(path)
    for expected in ("'prompt'", "'img'", "caption", "file_name_image or image_file_name",
                     "save_folder_points or points_save_folder", "source_dataset_audio", "[optional]"):
        assert expected in message, expected


def test_two_columns_for_one_role_are_refused(generations, tmp_path):
    copy = hub_copy(generations, tmp_path)
    path = copy / "E-MM1-100M" / "data" / "nn_01.parquet"
    rewrite(path, lambda t: t.append_column("image_file_name", t["file_name_image"]))
    with pytest.raises(EMM1DataError, match=r"file_name_image.*image_file_name.*Keep one") as error:
        prepare(str(copy), "phase1_nn1", tmp_path / "cache")
    assert error.value.code == "repeated_column"


# ---------------------------------------------------------------------------------------------- shards


def _small_row_groups(generations, tmp_path, rows_per_group=7):
    copy = hub_copy(generations, tmp_path)
    for name in ("nn_01.parquet", "nn_02.parquet"):
        path = copy / "E-MM1-100M" / "data" / name
        table = pq.read_table(path)
        pq.write_table(table, path, row_group_size=rows_per_group)
    return copy


def test_streaming_shards_are_row_groups_and_nodes_split_them(generations, tmp_path):
    copy = _small_row_groups(generations, tmp_path)
    builder = emm1.EMM1(config_name="phase1_nn1", data_dir=str(copy), root_data_path=ROOT, decode=False,
                        cache_dir=str(tmp_path / "cache"))
    stream = builder.as_streaming_dataset(split="train")
    num_shards = stream.num_shards if hasattr(stream, "num_shards") else stream.n_shards
    groups = pq.ParquetFile(copy / "E-MM1-100M" / "data" / "nn_01.parquet").num_row_groups
    assert num_shards == groups == 5  # 32 rows in row groups of 7
    prepared = prepare(str(copy), "phase1_nn1", tmp_path / "prepared")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DanglingIdWarning)
        streamed = list(stream)
        by_node = [list(split_dataset_by_node(stream, rank=rank, world_size=2)) for rank in range(2)]
    as_text = lambda rs: collections.Counter(json.dumps(r, sort_keys=True, default=str) for r in rs)  # noqa: E731
    assert as_text(streamed) == rows(prepared)
    assert by_node[0] and by_node[1] and as_text(by_node[0]) + as_text(by_node[1]) == rows(prepared)


def test_a_preparation_holds_at_most_one_row_group(generations, tmp_path, monkeypatch):
    """The batch being written and the next one, read meanwhile, together hold at most one row group's rows."""
    from emm1_lib.schema import prejoined

    copy = _small_row_groups(generations, tmp_path)
    original, seen = prejoined.iter_row_group, []

    def recording(described, row_group, batch_size):
        for batch in original(described, row_group, batch_size):
            seen.append((described.row_groups[row_group], batch.num_rows))
            yield batch

    monkeypatch.setattr(prejoined, "iter_row_group", recording)
    prepared = prepare(str(copy), "phase1_nn1", tmp_path / "cache")
    assert sum(rows for _, rows in seen) == prepared.num_rows  # every row was read through the recorder
    assert seen and all(2 * rows <= group for group, rows in seen), seen  # two batches in flight


def test_num_proc_2_gives_the_single_process_output(generations, tmp_path):
    copy = _small_row_groups(generations, tmp_path)
    single = prepare(str(copy), "phase1_all", tmp_path / "one")
    double = prepare(str(copy), "phase1_all", tmp_path / "two", num_proc=2)
    assert double.data.table.equals(single.data.table)
    assert single.data.table.equals(prepare(generations["released"], "phase1_all", tmp_path / "csv").data.table)


# ---------------------------------------------------------------------------------------------- tools


def test_export_layout_hub_reads_back_as_the_csv_output(generations, tmp_path):
    result = export_hub(str(tmp_path / "hub"), generations["released"], ["phase1_nn1", "phase2_triplets"])
    assert result.files == {"E-MM1-100M": ["data/nn_01.parquet"], "E-MM1-1M": sorted(result.files["E-MM1-1M"])}
    card = (tmp_path / "hub" / "E-MM1-100M" / "README.md").read_text()
    assert "data_files: data/nn_01.parquet" in card
    nn1 = prepare(str(tmp_path / "hub"), "phase1_nn1", tmp_path / "nn1")
    assert nn1.data.table.equals(prepare(generations["released"], "phase1_nn1", tmp_path / "ref1").data.table)
    triplets = prepare(str(tmp_path / "hub"), "phase2_triplets", tmp_path / "t")
    assert rows(triplets) == rows(prepare(generations["released"], "phase2_triplets", tmp_path / "ref2"))


def test_cli_sample_hub_validate_and_export(tmp_path, capsys):
    assert emm1_main(["sample", str(tmp_path / "s"), "--schema", "hub", "--no-media", "--captions", "8"]) == 0
    data = tmp_path / "s" / "metadata" / "E-MM1-100M" / "data"
    assert sorted(os.listdir(data))[:2] == ["nn_01.parquet", "nn_02.parquet"]
    assert emm1_main(["validate", str(tmp_path / "s" / "metadata")]) == 0
    assert "phase1: " in capsys.readouterr().out
    released = generate_sample_tree(str(tmp_path / "r"), media=False, num_captions=8)
    assert emm1_main(["export", "--layout", "hub", "--to", str(tmp_path / "e"), "--data-dir", released.metadata_dir,
                      "--configs", "phase1_nn2"]) == 0
    assert os.listdir(tmp_path / "e" / "E-MM1-100M" / "data") == ["nn_02.parquet"]
    with pytest.raises(SystemExit) as exit_status:  # options that shape prepared configs mean nothing here
        emm1_main(["export", "--layout", "hub", "--to", str(tmp_path / "e2"), "--data-dir", released.metadata_dir,
                   "--modalities", "image"])
    assert exit_status.value.code == 2


def test_validate_reports_what_the_builder_counts(generations):
    report = validate_tree(generations["hub"])
    assert report.ok, report.to_text()
    phase1 = report.split("phase1")
    assert phase1.schema == "hub" and len(phase1.tables) == 16
    assert phase1.modalities["image"].dangling > 0 and report.find("dangling_id", "nn_01.parquet")
    assert report.find("duplicate_rows", "nn_01.parquet")


def test_a_rank_split_into_hub_shard_files_reads_as_one(generations, tmp_path):
    """`nn_01-00000-of-00002.parquet` + `nn_01-00001-of-00002.parquet` (the Hub's shard names) are rank 1, in order."""
    copy = hub_copy(generations, tmp_path)
    data = copy / "E-MM1-100M" / "data"
    table = pq.read_table(data / "nn_01.parquet")
    os.remove(data / "nn_01.parquet")
    half = table.num_rows // 2
    pq.write_table(table.slice(0, half), data / "nn_01-00000-of-00002.parquet")
    pq.write_table(table.slice(half), data / "nn_01-00001-of-00002.parquet")
    sharded = prepare(str(copy), "phase1_nn1", tmp_path / "sharded")
    assert sharded.data.table.equals(prepare(generations["hub"], "phase1_nn1", tmp_path / "ref").data.table)
