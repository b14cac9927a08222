"""Person linkage: deterministic on valid/repaired ID numbers, Fellegi–Sunter (recordlinkage)
for records without a usable ID and for records that contradict their ID's holder,
constrained clustering, stable person_ids, golden records. The blocking rules and comparisons
are the stewards' declaration in standards/linkage.yaml (settings.py); facts from the ID number
are in person_facts.py, the comparison view and candidate pairs in person_blocking.py."""
from __future__ import annotations

import json
from time import perf_counter

import numpy as np
import pandas as pd

from .common import (ConstrainedUnion, _arrow_chunk, assign_stable_ids, categorical_text, decision_pairs, pair_id,
                     prepare_records, recode, singleton_groups, sorted_unique)
from .compare import COMPARATORS
from .config import LinkConfig, LinkResult
from .fellegi_sunter import estimate_mu, field_weights
from .person_blocking import _null_where, candidate_pairs, comparison_view, document_keys  # noqa: F401
from .person_facts import holder_conflicts, id_facts, truncated_twins  # noqa: F401
from .survivorship import entity_rules, golden_records, trust_rank

PERSON_COLS = ["id_number", "id_number_status", "id_number_note", "id_type", "doc_number", "name",
               "name_latin", "name_pinyin", "sex", "birth_date", "ethnicity", "phone", "address",
               "region_code", "updated_at", "phone_persons", "address_persons"]
GOLDEN_ELEMENTS = ["id_number", "name", "name_pinyin", "sex", "birth_date", "ethnicity",
                   "phone", "address", "region_code"]
# distinct_sources keeps one bit per source in an int64 mask, clear of the sign bit (and one
# spare): with more sources than this the same-source check is skipped, not an error.
MAX_MASKED_SOURCES = 62
RULE_TEXT = np.array(["id", "repaired_id", "probabilistic", "steward", "singleton"], dtype=object)
ID, REPAIRED_ID, PROBABILISTIC, STEWARD, SINGLETON = range(len(RULE_TEXT))


def _rows(view: pd.DataFrame, at: np.ndarray, columns: list[str]) -> pd.DataFrame:
    """view.iloc[at] of the given columns on a fresh RangeIndex, taken column by column
    (the blocking keys are not needed, and a frame-wide take costs more); text the view holds
    as a Categorical (coded_text) stays coded, so both sides of a pair compare as integers."""
    return pd.DataFrame({c: view[c].array.take(at) for c in columns})


def coded_text(view: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """view with its text `columns` as Categoricals over their distinct values (those already
    coded kept). Taken for ~2M pairs per partition at 5M persons, as strings they were copied
    and compared byte by byte; as codes they are integers."""
    for column in columns:
        if isinstance(view[column].dtype, pd.StringDtype):
            view[column] = categorical_text(_arrow_chunk(view[column]))
    return view


def compared_columns_of(cfg: LinkConfig) -> list[str]:
    """The view's columns the declared comparisons read, in declaration order."""
    return list(dict.fromkeys(c for comp in cfg.comparisons for c in comp.columns))


def compare_pairs(view: pd.DataFrame, pairs: pd.MultiIndex, conflict: np.ndarray,
                  cfg: LinkConfig) -> pd.DataFrame:
    """One column per declared comparison: its comparator (compare.COMPARATORS) on the pairs'
    columns. A borrowed ID (conflict) proves a link when it agrees, but nothing when it differs."""
    l, r = pairs.get_level_values(0).to_numpy(), pairs.get_level_values(1).to_numpy()
    if not len(pairs):
        return pd.DataFrame(columns=[c.name for c in cfg.comparisons], index=pairs, dtype=float)
    columns = compared_columns_of(cfg)
    L, R = _rows(view, l, columns), _rows(view, r, columns)
    borrowed = conflict[l] | conflict[r]
    feats = {}
    for comp in cfg.comparisons:
        values = COMPARATORS[comp.comparator][0]([(L[c], R[c]) for c in comp.columns], cfg)
        if comp.comparator == "id_within_edits":
            values = np.where(borrowed & (values == 0), np.nan, values)
        feats[comp.name] = values
    return pd.DataFrame(feats, index=pairs)


def shared_value_weights(weight: np.ndarray, agree: np.ndarray, persons: np.ndarray) -> np.ndarray:
    """Agreement weight with u scaled by the persons using the value (shared_values.py):
    log2(m / (u * k)) = log2(m / u) - log2(k), never below 0; disagreement as it was."""
    k = np.maximum(np.nan_to_num(persons.astype(np.float64), nan=1.0), 1.0)
    scaled = np.maximum(weight - np.log2(k), 0.0)
    return np.where(agree == 1, scaled, weight)


def score_pairs(feats: pd.DataFrame, view: pd.DataFrame, cfg: LinkConfig) -> tuple[pd.DataFrame, dict, dict, str]:
    """(per-pair weights, m, u, where m/u come from). A level between 0 and 1 (a rare
    character's stand-in) is weak agreement: that share of the agreement weight, never a
    disagreement, and unseen by ECM. A comparison with u_scaled_by weighs a value by the
    persons using it."""
    partial = (feats > 0) & (feats < 1)
    model_feats = feats.mask(partial) if partial.to_numpy().any() else feats   # ECM sees 1/0 only
    m, u, source = estimate_mu(model_feats, cfg.m_prior, cfg.u_prior, cfg.estimate_weights, cfg.min_pairs_for_ecm)
    weights = field_weights(model_feats, m, u)
    left = feats.index.get_level_values(0).to_numpy() if len(feats) else np.zeros(0, dtype=np.int64)
    for comp in cfg.comparisons:
        weak = partial[comp.name].to_numpy()
        if weak.any():
            weights.loc[weak, comp.name] = feats[comp.name].to_numpy()[weak] * np.log2(m[comp.name] / u[comp.name])
        if comp.u_scaled_by and len(feats):
            weights[comp.name] = shared_value_weights(weights[comp.name].to_numpy(), feats[comp.name].to_numpy(),
                                                      view[comp.u_scaled_by].to_numpy()[left])
    return weights, m, u, source


def id_groups(df: pd.DataFrame, facts: pd.DataFrame, trust: np.ndarray, steward_non: np.ndarray,
              codes: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(conflict, held, group, held_code, held_ids): one group per held ID number, every
    other record alone. A steward's non-match inside an ID group sends the less trusted record
    out of it."""
    conflict = holder_conflicts(df, facts, trust, codes)
    usable = facts["usable"].to_numpy()
    id_text = df["id_number"].fillna("").to_numpy(dtype=object) if len(steward_non) else None
    same_id = steward_non[(id_text[steward_non[:, 0]] == id_text[steward_non[:, 1]]) &
                          usable[steward_non[:, 0]] & usable[steward_non[:, 1]]] \
        if len(steward_non) else steward_non
    if len(same_id):
        pick = np.where(trust[same_id[:, 0]] > trust[same_id[:, 1]], same_id[:, 0], same_id[:, 1])
        conflict[pick] = True
    held = usable & ~conflict
    group = singleton_groups(len(df))
    held_code, held_ids = recode(codes["id_number"][0], held)
    group[held] = held_code[held]
    return conflict, held, group, held_code, held_ids


def reissued(view: pd.DataFrame, l: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Pairs whose records both carry a document of one type (numbers aside): the office that
    issues passports or permits keeps a record per document, so one person's renewed passport is
    a second record of that department."""
    kind = pd.factorize(view["document_type"], use_na_sentinel=True)[0]   # -1: no document
    return (kind[l] >= 0) & (kind[l] == kind[r])


def cluster(df: pd.DataFrame, view: pd.DataFrame, group: np.ndarray, n_id_groups: int, pairs: pd.MultiIndex,
            score: np.ndarray, feats: pd.DataFrame, steward_match: np.ndarray, steward_non: np.ndarray,
            cfg: LinkConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cluster per record, accepted pairs, refused pairs): steward matches first, then the
    pairs at or above match_threshold in descending score, each refused when it would join two
    ID numbers, a steward's non-match, or (without identifier agreement, or a reissued document
    with the same birth date) a second record of a department."""
    n = len(df)
    cannot: dict[int, set[int]] = {}
    for a, b in steward_non:
        cannot.setdefault(int(a), set()).add(int(b))
        cannot.setdefault(int(b), set()).add(int(a))
    src_code = pd.factorize(df["source_system"])[0]
    source_mask = None
    if src_code.max(initial=0) < MAX_MASKED_SOURCES and cfg.distinct_sources:
        source_mask = np.zeros(2 * n, dtype=np.int64)
        np.bitwise_or.at(source_mask, group, np.left_shift(1, src_code).astype(np.int64))
    uf = ConstrainedUnion(n_id_groups, cannot, group, source_mask)
    for a, b in steward_match:
        uf.union(int(group[a]), int(group[b]), force=True)
    l, r = pairs.get_level_values(0).to_numpy(), pairs.get_level_values(1).to_numpy()
    order = np.argsort(-score, kind="stable")
    identifiers = [c.name for c in cfg.comparisons if c.identifier]
    proven = (feats[identifiers] == 1).any(axis=1).to_numpy() if len(feats) and identifiers \
        else np.zeros(len(score), dtype=bool)
    if "birth" in feats:   # a renewal on file at the issuing office carries the holder's birth date
        proven |= reissued(view, l, r) & (feats["birth"] == 1).to_numpy()
    accepted = np.zeros(len(score), dtype=bool)
    refused = np.zeros(len(score), dtype=bool)
    tried = order[score[order] >= cfg.match_threshold]
    reasons = [uf.union(a, b, distinct_sources=not agree) for a, b, agree in   # Python ints
               zip(group[l[tried]].tolist(), group[r[tried]].tolist(), proven[tried].tolist())]
    accepted[tried] = [reason is None for reason in reasons]
    refused[tried] = [reason in ("different_id", "same_source") for reason in reasons]
    return uf.labels(group), accepted, refused


def match_rules(df: pd.DataFrame, held: np.ndarray, cluster_of: np.ndarray, l: np.ndarray, r: np.ndarray,
                score: np.ndarray, accepted: np.ndarray, steward_match: np.ndarray) -> tuple[np.ndarray, pd.Series]:
    """(rule code into RULE_TEXT, match score) per record: id / repaired_id for held records,
    probabilistic (with its best accepted score) for the others linked, steward where a
    steward's match held, singleton for a cluster of one."""
    size = np.bincount(cluster_of)[cluster_of]   # cluster labels are group numbers < 2n
    link_score = pd.concat([pd.Series(score[accepted], index=l[accepted]),
                            pd.Series(score[accepted], index=r[accepted])])
    link_score = link_score[~held[link_score.index]].groupby(level=0).max()
    repaired = (df["id_number_status"] == "repaired").fillna(False).to_numpy(dtype=bool)
    rule = np.where(held, np.where(repaired, REPAIRED_ID, ID), SINGLETON)
    rule[link_score.index.to_numpy()] = PROBABILISTIC
    if len(steward_match):   # steward links that held (a non_match elsewhere may veto)
        kept = steward_match[cluster_of[steward_match[:, 0]] == cluster_of[steward_match[:, 1]]]
        rule[sorted_unique(kept.ravel())] = STEWARD
    rule[size <= 1] = SINGLETON
    match_score = pd.Series(np.nan, index=range(len(df)))
    match_score[link_score.index] = link_score.to_numpy()
    return rule, match_score.where(rule == PROBABILISTIC)


# ---------------------------------------------------------------- public entry point
def link_persons(records: pd.DataFrame, *, previous_xref: pd.DataFrame | None = None,
                 previous_ids: pd.Series | None = None, decisions: pd.DataFrame | None = None,
                 survivorship: dict, run_id: str,
                 config: LinkConfig | None = None) -> LinkResult:
    cfg = config or LinkConfig()
    seconds: dict[str, float] = {}
    clock = perf_counter()

    def lap(step: str) -> None:
        nonlocal clock
        now = perf_counter()
        seconds[step] = round(now - clock, 4)
        clock = now

    spec = entity_rules(survivorship, "person")
    df = prepare_records(records, PERSON_COLS, "person records")
    n = len(df)
    trust = trust_rank(df["source_system"], list(spec["trust_order"]))
    key_to_pos = pd.Series(np.arange(n), index=df["_key"].to_numpy()) \
        if decisions is not None and len(decisions) else pd.Series(dtype=np.int64)
    steward_match, steward_non = decision_pairs(decisions, key_to_pos)
    facts = id_facts(df)
    codes: dict = {}   # factorize per column, shared by the steps

    # 1 deterministic: one group per held ID number
    conflict, held, group, held_code, held_ids = id_groups(df, facts, trust, steward_non, codes)
    lap("deterministic")

    # 2 probabilistic: queued records against everything sharing a blocking key
    queue = np.flatnonzero(~held)
    view = comparison_view(df, facts, conflict, cfg, codes)
    pairs = candidate_pairs(view, queue, group, cfg, codes) if len(queue) else \
        pd.MultiIndex.from_arrays([np.zeros(0, dtype=np.int64)] * 2)
    lap("blocking")
    view = coded_text(view, compared_columns_of(cfg))
    feats = compare_pairs(view, pairs, conflict, cfg)
    lap("comparing")
    weights, m, u, weight_source = score_pairs(feats, view, cfg)
    score = weights.sum(axis=1).to_numpy()
    lap("classifying")

    # 3 constrained clustering: steward matches, then links in descending score
    cluster_of, accepted, refused = cluster(df, view, group, len(held_ids), pairs, score, feats, steward_match,
                                            steward_non, cfg)
    l, r = pairs.get_level_values(0).to_numpy(), pairs.get_level_values(1).to_numpy()
    lap("clustering")

    # 4 rules, scores, stable ids
    rule, match_score = match_rules(df, held, cluster_of, l, r, score, accepted, steward_match)
    ids, history = assign_stable_ids(df["_key"], cluster_of, df, previous_xref, "person_id", "P",
                                     "person", run_id, previous_ids)
    xref = pd.DataFrame({"source_system": df["source_system"],
                         "source_record_id": df["source_record_id"],
                         "person_id": ids,
                         "match_rule": pd.Series(pd.arrays.StringArray(RULE_TEXT[rule])),
                         "match_score": match_score.round(4).astype("Float64")})
    lap("ids")

    # 5 golden records: the ID comes only from records that hold it
    person_ids = np.asarray(ids.array)   # the object array behind the strings, no copy
    golden = person_golden(df, facts["birth"], held, person_ids, spec,
                           _golden_codes(cluster_of, person_ids, codes, held_code, held_ids))
    lap("golden")

    keys = df["_key"]
    evidence = _evidence(df, person_ids, l[accepted], r[accepted], score[accepted],
                         weights[accepted], feats[accepted])
    in_review = (score >= cfg.review_threshold) & ~accepted & \
        ((score < cfg.match_threshold) | refused) & (cluster_of[l] != cluster_of[r])
    review = _review(df, keys, l[in_review], r[in_review], score[in_review], weights[in_review],
                     refused[in_review], cluster_of, decisions_keys(steward_match, steward_non, keys))
    lap("review")

    stats = {
        "records": n, "clusters": int(len(sorted_unique(cluster_of))),
        "match_rule": {k: int(v) for k, v in xref["match_rule"].value_counts().items()},
        "queued_for_probabilistic": int(len(queue)), "conflicts": int(conflict.sum()),
        "pairs_compared": int(len(pairs)), "links_accepted": int(accepted.sum()),
        "links_refused_cannot_link": int(refused.sum()), "review": int(len(review)),
        "weights": weight_source, "m": m, "u": u, "seconds": seconds,
    }
    return LinkResult(xref=xref, golden=golden, history=history, review=review,
                      evidence=evidence, stats=stats)


def person_golden(df: pd.DataFrame, birth: pd.Series, held: np.ndarray, person_ids: np.ndarray, spec: dict,
                  codes: dict) -> pd.DataFrame:
    """Golden records by the survivorship rules; the ID number only from records holding it."""
    gold_in = pd.DataFrame({c: df[c] for c in ["source_system", "source_record_id", "updated_at"] + GOLDEN_ELEMENTS})
    gold_in["person_id"] = person_ids
    gold_in["id_number"] = _null_where(df["id_number"], ~held)
    gold_in["birth_date"] = birth
    golden = golden_records(gold_in, "person_id", GOLDEN_ELEMENTS, spec, codes)
    golden["birth_date"] = golden["birth_date"].dt.date.astype(object).where(golden["birth_date"].notna(), None)
    return golden


def _golden_codes(cluster: np.ndarray, person_ids: np.ndarray, codes: dict,
                  held_code: np.ndarray, held_ids: np.ndarray) -> dict:
    """Codes golden_records would otherwise hash again: person_id codes are the clusters'
    (one id per cluster), the held ID numbers', and the shared pinyin and phone codes."""
    gid = pd.factorize(cluster)[0]
    first = np.flatnonzero(~pd.Series(cluster).duplicated().to_numpy())   # in gid order
    return {"person_id": (gid, person_ids[first]), "id_number": (held_code, held_ids),
            "name_pinyin": codes["name_pinyin"], "phone": codes["phone"]}


def _at(values: pd.Series, rows: np.ndarray) -> np.ndarray:
    """values.to_numpy()[rows], converting only the rows taken."""
    return values.iloc[rows].to_numpy()


def decisions_keys(match: np.ndarray, non: np.ndarray, keys: pd.Series) -> set[tuple[str, str]]:
    pairs = np.vstack([match.reshape(-1, 2), non.reshape(-1, 2)])
    return {tuple(sorted(pair)) for pair in _at(keys, pairs.ravel()).reshape(-1, 2)}


def _evidence(df, ids, l, r, score, weights, feats) -> pd.DataFrame:
    """ids: person id per record (numpy)."""
    out = pd.DataFrame({
        "left_source_system": _at(df["source_system"], l),
        "left_source_record_id": _at(df["source_record_id"], l),
        "right_source_system": _at(df["source_system"], r),
        "right_source_record_id": _at(df["source_record_id"], r),
        "person_id": ids[l],
        "score": np.round(score, 4)})
    for f in weights.columns:
        out[f"w_{f}"] = np.round(weights[f].to_numpy(), 4)
        out[f"agree_{f}"] = feats[f].to_numpy()
    return out.astype({c: "string" for c in out.columns[:5]})


def _review(df, keys, l, r, score, weights, refused, cluster, decided) -> pd.DataFrame:
    cols = ["pair_id", "entity", "left_source_system", "left_source_record_id",
            "right_source_system", "right_source_record_id", "score", "evidence", "reason",
            "status"]
    cand = pd.DataFrame({"l": l, "r": r, "score": score, "refused": refused,
                         "target": cluster[r], "i": np.arange(len(l))})
    # one question per (record, other cluster): the best pair shows the case
    cand = cand.sort_values(["l", "target", "score"], ascending=[True, True, False])
    cand = cand.drop_duplicates(["l", "target"])
    if decided:
        lk, rk = _at(keys, cand["l"].to_numpy()), _at(keys, cand["r"].to_numpy())
        cand = cand[[tuple(sorted(p)) not in decided for p in zip(lk, rk)]]
    if cand.empty:
        return pd.DataFrame(columns=cols).astype({c: "string" for c in cols if c != "score"})
    w = weights.iloc[cand["i"].to_numpy()]
    evidence = [json.dumps({f: round(float(v), 3) for f, v in zip(w.columns, row)})
                for row in w.to_numpy()]
    lk, rk = pd.Series(_at(keys, cand["l"].to_numpy())), pd.Series(_at(keys, cand["r"].to_numpy()))
    out = pd.DataFrame({
        "pair_id": pair_id(lk, rk).to_numpy(), "entity": "person",
        "left_source_system": _at(df["source_system"], cand["l"].to_numpy()),
        "left_source_record_id": _at(df["source_record_id"], cand["l"].to_numpy()),
        "right_source_system": _at(df["source_system"], cand["r"].to_numpy()),
        "right_source_record_id": _at(df["source_record_id"], cand["r"].to_numpy()),
        "score": np.round(cand["score"].to_numpy(), 4), "evidence": evidence,
        "reason": np.where(cand["refused"], "conflict", "uncertain"), "status": "open"})
    return out.astype({c: "string" for c in cols if c != "score"}).reset_index(drop=True)
