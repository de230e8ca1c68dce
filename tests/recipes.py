"""The hand-written polars recipes of the E-MM1 README (seed.md), as users run them today.

They are the reference the builders must reproduce row for row. Transcribed from seed.md with
one fix: the phase-1 example joins on `encord_{modality}_index`, a typo for `encord_{modality}_id`.
A row number is added before the joins so the output can be put back in file order.
"""
from itertools import permutations
from pathlib import Path

import polars as pl

CHOSEN_MODALITIES = ["image", "audio", "video", "points"]


def phase1_recipe(phase1_dir: str, root: str, k: int = 1) -> pl.DataFrame:
    """seed.md "Phase 1 Example": nn_k groups with file paths and captions."""
    groups = pl.read_csv(f"{phase1_dir}/nn_{k}/data_groups.csv").with_row_index("row")
    infos = {m: pl.read_csv(f"{phase1_dir}/infos/{m}.csv") for m in CHOSEN_MODALITIES}
    text_info = pl.read_csv(f"{phase1_dir}/infos/text.csv")
    sep = str(Path("/"))
    for modality in CHOSEN_MODALITIES:
        info_df = infos[modality].with_columns(
            (pl.lit(str(root)) + sep + pl.col("save_folder") + sep + pl.lit(modality) + sep + pl.col("file_name")).alias(
                f"{modality}_file_path"
            )
        )
        join_col = f"encord_{modality}_id"
        groups = groups.join(info_df.select([join_col, f"{modality}_file_path"]), on=join_col, how="left")
    groups = groups.join(text_info.select(["encord_text_id", "caption"]), on="encord_text_id", how="left")
    return groups.sort("row")


def _released_to_long(triplets: pl.DataFrame) -> pl.DataFrame:
    return triplets.rename({"paired_modality": "modality_1", "annotated_modality": "modality_2"})


def phase2_recipe(phase2_dir: str, root: str, modalities) -> pl.DataFrame:
    """seed.md "Extracting all Point-Cloud <> Audio groups", generalised to the released columns.

    Output columns: encord_text_id, modality_1, modality_2, id_1, id_2, modality_1_file_path,
    modality_2_file_path, annotation, caption (one row per kept triplet, duplicates kept).
    """
    triplets_df = pl.read_csv(f"{phase2_dir}/triplets.csv")
    released = "paired_modality" in triplets_df.columns
    if released:
        triplets_df = _released_to_long(triplets_df)
    modality_to_info = {}
    for modality in modalities:
        info_df = pl.read_csv(f"{phase2_dir}/infos/{modality}.csv")
        info_df = info_df.with_columns(
            (pl.lit(str(root)) + "/" + pl.col("save_folder") + "/" + pl.lit(modality) + "/" + pl.col("file_name")).alias(
                "file_path"
            )
        )
        modality_to_info[modality] = info_df
    processed = []
    for mod1, mod2 in permutations(modalities, 2):
        pair = triplets_df.filter((pl.col("modality_1") == mod1) & (pl.col("modality_2") == mod2))
        if pair.height == 0:
            continue
        id_1 = "encord_paired_id" if released else f"encord_{mod1}_id"
        id_2 = "encord_annotated_id" if released else f"encord_{mod2}_id"
        mod_1_info = modality_to_info[mod1].select([pl.col(f"encord_{mod1}_id").alias(id_1), pl.col("file_path").alias("modality_1_file_path")])
        mod_2_info = modality_to_info[mod2].select([pl.col(f"encord_{mod2}_id").alias(id_2), pl.col("file_path").alias("modality_2_file_path")])
        pair = pair.join(mod_1_info, on=id_1, how="left").join(mod_2_info, on=id_2, how="left")
        processed.append(
            pair.select(
                "encord_text_id", "modality_1", "modality_2",
                pl.col(id_1).alias("id_1"), pl.col(id_2).alias("id_2"),
                "modality_1_file_path", "modality_2_file_path", "annotation",
            )
        )
    output = pl.concat(processed)
    text_info = pl.read_csv(f"{phase2_dir}/infos/text.csv").select(["encord_text_id", "caption"])
    return output.join(text_info, on="encord_text_id", how="left")
