"""Linkage quality against a known truth: pairwise precision / recall / F1 counted from
cluster sizes (sum of C(n,2) over the contingency table — no pair enumeration), and the
errors broken down by likely cause, derived from the standardised records."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

KEY = ["source_system", "source_record_id"]


def _pairs(counts: pd.Series | np.ndarray) -> int:
    c = np.asarray(counts, dtype=np.int64)
    return int((c * (c - 1) // 2).sum())


CITIZEN_ID_TYPES = ("111", "112", "113")


def _col(records: pd.DataFrame, name: str) -> pd.Series:
    return records[name] if name in records else pd.Series(pd.NA, index=records.index)


def _person_rules(records: pd.DataFrame) -> list[tuple[str, pd.Series]]:
    """Person causes, most specific first: guardian_id (ID's birth date/sex contradict the
    record), excel_damage (ID number through a spreadsheet), other_document (passport, travel
    permit: no lifelong key), typo_id (invalid ID present), no_identifier (the source has no
    ID column), missing_id, fifteen_digit (upgraded from 15 digits), rare_character (a
    placeholder or pinyin for a character the system lacked), latin_name (a foreigner's or
    HK/MO/TW resident's Latin name beside a permanent residence ID / residence permit),
    pinyin_only (no Chinese name)."""
    col = lambda c: _col(records, c)
    ids = col("id_number").astype("string")
    status = col("id_number_status").astype("string")
    note = col("id_number_note").astype("string").fillna("")
    usable = status.isin(["valid", "repaired"]) & ids.notna()
    id_birth = pd.to_datetime(ids.where(usable).str[6:14], format="%Y%m%d", errors="coerce")
    birth = pd.to_datetime(col("birth_date"), errors="coerce")
    digit = pd.to_numeric(ids.where(usable).str[16], errors="coerce").astype("float64")
    id_sex = pd.Series(np.where(digit % 2 == 1, "1", "2"), index=records.index).where(digit.notna())
    sex = col("sex").astype("string")
    guardian = usable & (((birth != id_birth) & birth.notna() & id_birth.notna())
                         | (sex.isin(["1", "2"]) & id_sex.notna() & (sex != id_sex)))
    name = col("name").astype("string")
    doc = col("doc_number").astype("string")
    id_type = col("id_type").astype("string")
    # The source maps no ID column at all: its status column is empty, not 'missing'.
    unmapped = status.isna() & ids.isna() & doc.isna() if "id_number_status" in records else \
        pd.Series(False, index=records.index)
    non_citizen_key = ids.str.match(r"^(9|8[123])", na=False) | (id_type.notna() & ~id_type.isin(CITIZEN_ID_TYPES))
    return [("guardian_id", guardian.fillna(False)),
            ("excel_damage", note.str.contains("excel_", regex=False)),
            ("other_document", (status == "other_document").fillna(False) | doc.notna()),
            ("typo_id", (status == "invalid").fillna(False) & ids.notna()),
            ("no_identifier", unmapped.fillna(False)),
            ("missing_id", (status == "missing").fillna(False) | ids.isna()),
            ("fifteen_digit", note.str.contains("upgraded_15", regex=False)),
            ("rare_character", name.str.contains(r"[*?□A-Za-z]", regex=True).fillna(False)
             & name.str.contains(r"[\u4e00-\u9fff]", regex=True).fillna(False)),
            ("latin_name", name.isna() & col("name_latin").notna() & non_citizen_key.fillna(False)),
            ("pinyin_only", name.isna() & col("name_pinyin").notna())]


def _enterprise_rules(records: pd.DataFrame) -> list[tuple[str, pd.Series]]:
    """Enterprise causes: no_code (no USCC, organisation code, registration or tax number),
    old_code_only (no USCC, an old number), typo_uscc, individual_business (USCC 92…),
    branch (分公司 in the name)."""
    col = lambda c: _col(records, c)
    uscc = col("uscc").astype("string")
    codes = [col(c).astype("string") for c in ("uscc", "org_code", "reg_no", "tax_no")]
    no_code = codes[0].isna() & codes[1].isna() & codes[2].isna() & codes[3].isna()
    old_only = uscc.isna() & ~no_code
    return [("no_code", no_code.fillna(False)),
            ("old_code_only", old_only.fillna(False)),
            ("typo_uscc", (col("uscc_status").astype("string") == "invalid").fillna(False)),
            ("individual_business", uscc.str.startswith("92").fillna(False)),
            ("branch", col("name").astype("string").str.contains("分公司", regex=False).fillna(False))]


def record_causes(records: pd.DataFrame) -> pd.Series:
    """One cause label per record (the first rule that applies; see _person_rules and
    _enterprise_rules), from the std columns; else NA. Enterprise records are those of kind
    'enterprise' (or, without a kind column, records with a uscc and no id_number column)."""
    if "kind" in records:
        enterprise = (records["kind"].astype("string") == "enterprise").fillna(False).to_numpy(dtype=bool)
    else:
        enterprise = np.full(len(records), "uscc" in records and "id_number" not in records)
    cause = pd.Series(pd.NA, index=records.index, dtype="string")
    for rows, rules in ((~enterprise, _person_rules), (enterprise, _enterprise_rules)):
        if not rows.any():
            continue
        for label, mask in reversed(rules(records)):   # earlier rules win
            cause = cause.mask(mask.to_numpy(dtype=bool) & rows, label)
    return cause


def _pair_cause(minority: pd.DataFrame, majority: pd.DataFrame) -> str:
    """Why records of two entities were merged (or one entity split): a record cause if any
    record carries one, else twin (same birth date, different names) / namesake (same name)."""
    causes = minority["_cause"].dropna()
    if len(causes):
        return str(causes.mode().sort_values().iloc[0])
    if "name" in minority and "birth_date" in minority:
        same_name = bool(set(minority["name"].dropna()) & set(majority["name"].dropna()))
        mb = set(pd.to_datetime(minority["birth_date"], errors="coerce").dropna())
        jb = set(pd.to_datetime(majority["birth_date"], errors="coerce").dropna())
        if same_name:
            return "namesake"
        if mb & jb:
            return "twin"
    return "other"


def _errors_by_cause(cells: pd.DataFrame, by: str, other: str, detail: pd.DataFrame) -> dict:
    """For each cluster of `by` spread over several `other` clusters: the pairs lost there
    (C(size,2) - sum C(cell,2)), attributed to the records outside its largest cell. The
    records of each such cluster are found through one grouping (not a scan per cluster)."""
    out: dict[str, int] = {}
    spread = cells[cells.groupby(by)[other].transform("size") > 1]
    if spread.empty:
        return out
    # each spread cluster's largest cell (ties: the smallest `other` id), and its lost pairs
    ranked = spread.sort_values([by, "n", other], ascending=[True, False, True])
    biggest = ranked.drop_duplicates(by).set_index(by)[other]
    n = spread["n"].to_numpy(dtype=np.int64)
    lost = (spread.assign(cell_pairs=n * (n - 1) // 2).groupby(by)
            .agg(total=("n", "sum"), cell_pairs=("cell_pairs", "sum")))
    lost = lost["total"] * (lost["total"] - 1) // 2 - lost["cell_pairs"]
    involved = detail[detail[by].isin(biggest.index)]
    for key, positions in involved.groupby(by, sort=False).indices.items():
        rows = involved.iloc[positions]
        inside = (rows[other] == biggest[key]).to_numpy()
        cause = _pair_cause(rows[~inside], rows[inside])
        out[cause] = out.get(cause, 0) + int(lost[key])
    return dict(sorted(out.items()))


def _scores(tp: int, predicted: int, actual: int) -> dict:
    precision = tp / predicted if predicted else 1.0
    recall = tp / actual if actual else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def _lost_pairs(cluster: np.ndarray, value: np.ndarray, n_values: int) -> np.ndarray:
    """Per value v: sum over clusters c of C(n_c, 2) - C(n_c - n_cv, 2), the pairs of clusters
    that involve at least one record of value v (n_cv: the cluster's records of value v)."""
    size = np.bincount(cluster)
    has = value >= 0
    pairs_key = value[has].astype(np.int64) * (int(cluster.max()) + 1) + cluster[has]
    keys, n_cv = np.unique(pairs_key, return_counts=True)
    v, c = np.divmod(keys, int(cluster.max()) + 1)
    n_c = size[c]
    touched = n_c * (n_c - 1) // 2 - (n_c - n_cv) * (n_c - n_cv - 1) // 2
    return np.bincount(v, weights=touched, minlength=n_values).astype(np.int64)


def _touching(joined: pd.DataFrame, id_col: str, truth_col: str, group: pd.Series) -> dict:
    """Per value of `group`: pairwise scores over the pairs with at least one record of that
    value, counted from cluster sizes in one pass for all values."""
    value, labels = pd.factorize(group, sort=True)
    predicted_c = pd.factorize(joined[id_col])[0]
    actual_c = pd.factorize(joined[truth_col])[0]
    cell = pd.factorize(pd.Series(predicted_c.astype(np.int64) * (int(actual_c.max()) + 1 if len(actual_c) else 1)
                                  + actual_c))[0]
    k = len(labels)
    tp, predicted, actual = (_lost_pairs(c, value, k) for c in (cell, predicted_c, actual_c))
    records = np.bincount(value[value >= 0], minlength=k)
    return {str(label): {"records": int(records[i]), "true_pairs": int(actual[i]),
                         "predicted_pairs": int(predicted[i]), "false_merge_pairs": int(predicted[i] - tp[i]),
                         "missed_pairs": int(actual[i] - tp[i]), **_scores(int(tp[i]), int(predicted[i]), int(actual[i]))}
            for i, label in enumerate(labels)}


def evaluate(xref: pd.DataFrame, truth: pd.DataFrame, id_col: str = "person_id",
             truth_col: str = "true_person_id", records: pd.DataFrame | None = None) -> dict:
    """Pairwise precision, recall, F1 of xref's clusters against truth's, over the records
    both know; by_source: the same over the pairs touching each source. With records, or a
    truth `cause` column (the generator's label of what it did to a record, preferred to the
    cause read from the records): false_merges and misses (pair counts) by cause, and
    by_cause (scores over the pairs touching records of each cause)."""
    for frame, cols, what in ((xref, KEY + [id_col], "xref"), (truth, KEY + [truth_col], "truth")):
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise ValueError(f"evaluate: {what} lacks column(s) {', '.join(missing)}")
    x = xref[KEY + [id_col]].astype("string")
    t = truth[KEY + [truth_col] + (["cause"] if "cause" in truth else [])].astype("string")
    joined = x.merge(t, on=KEY, how="inner")
    cells = joined.groupby([id_col, truth_col]).size().rename("n").reset_index()
    tp = _pairs(cells["n"])
    predicted = _pairs(cells.groupby(id_col)["n"].sum())
    actual = _pairs(cells.groupby(truth_col)["n"].sum())
    result = {"records": len(joined), "records_unmatched_in_truth": int(len(x) - len(joined)),
              "true_pairs": actual, "predicted_pairs": predicted, "true_positive_pairs": tp,
              "false_merge_pairs": predicted - tp, "missed_pairs": actual - tp,
              **_scores(tp, predicted, actual),
              "predicted_entities": int(joined[id_col].nunique()),
              "true_entities": int(joined[truth_col].nunique())}
    result["by_source"] = _touching(joined, id_col, truth_col, joined["source_system"])
    if records is None and "cause" not in joined:
        return result
    detail = joined
    if records is not None:
        rec = records.copy()
        rec[KEY] = rec[KEY].astype("string")
        rec["_cause"] = record_causes(rec)
        detail = joined.merge(rec.drop(columns=["cause"], errors="ignore"), on=KEY, how="left")
    else:
        detail = joined.assign(_cause=pd.Series(pd.NA, index=joined.index, dtype="string"))
    if "cause" in detail:
        detail["_cause"] = detail["cause"].astype("string").fillna(detail["_cause"].astype("string"))
    result["false_merges_by_cause"] = _errors_by_cause(cells, id_col, truth_col, detail)
    result["misses_by_cause"] = _errors_by_cause(cells, truth_col, id_col, detail)
    result["by_cause"] = _touching(joined, id_col, truth_col, detail["_cause"])
    return result


KINDS = {"person": ("person_id", "true_person_id", "persons.parquet"),
         "enterprise": ("enterprise_id", "true_enterprise_id", "enterprises.parquet")}


# std columns the cause rules read (the rest of a standardised record is not needed here)
CAUSE_COLUMNS = ["kind", "id_number", "id_number_status", "id_number_note", "id_type", "doc_number", "name",
                 "name_latin", "name_pinyin", "birth_date", "sex", "uscc", "uscc_status", "org_code", "reg_no",
                 "tax_no"]


def _std_records(std_files: list[str]) -> list[pd.DataFrame]:
    """The cause columns of every std file, one file at a time (memory: one file, not the lake)."""
    from govdata.lake import read_arrow, to_pandas

    frames = []
    for path in std_files:
        table = read_arrow(path)
        table = table.select([c for c in KEY + CAUSE_COLUMNS if c in table.column_names])
        frames.append(to_pandas(table, arrow_strings=True))
        del table
    return frames


def evaluate_run(world: str | Path, summary: dict, lake: str | None = None,
                 progress: Callable[[str], None] | None = None) -> dict:
    """Scores one pipeline run on a generated world: the run's link/<kind>_xref.parquet
    against world/truth/<kind>s.parquet, error causes from the run's std/*.parquet.
    progress: told what is being done (one short line per step)."""
    import fsspec

    from govdata.lake import read_parquet, run_path
    from govdata.settings import get_settings

    say = progress or (lambda _line: None)
    lake = lake or summary.get("lake") or get_settings().lake
    run_id = summary["run_id"]
    std_dir = run_path(lake, run_id, "std")
    fs, _, (std_root,) = fsspec.get_fs_token_paths(std_dir)
    std_files = sorted(fs.glob(f"{std_root}/*.parquet")) if fs.exists(std_root) else []
    say(f"reading the standardised records of {len(std_files)} sources")
    std = _std_records(std_files)
    out = {}
    for kind, (id_col, truth_col, truth_file) in KINDS.items():
        xref_path = run_path(lake, run_id, "link", f"{kind}_xref.parquet")
        truth_path = Path(world) / "truth" / truth_file
        if not fs.exists(fsspec.core.strip_protocol(xref_path)) or not truth_path.exists():
            out[kind] = {"error": f"missing {truth_path if not truth_path.exists() else xref_path}"}
            continue
        records = [s for s in std if "kind" in s and len(s) and (s["kind"] == kind).all()]
        say(f"scoring {kind}s: {sum(len(r) for r in records):,} records against the truth")
        out[kind] = evaluate(read_parquet(xref_path, columns=KEY + [id_col]), pd.read_parquet(truth_path),
                             id_col, truth_col, records=pd.concat(records, ignore_index=True) if records else None)
    return out
