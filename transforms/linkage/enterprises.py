"""Enterprise linkage: the unified social credit code (GB 32100) first, then the old
identifiers it replaced — organisation code (GB 11714), tax number (region + org code),
business registration number — and the normalised name with the legal representative for
records without any identifier."""
from __future__ import annotations

import json
from time import perf_counter

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .compare import as_datetime
from .common import (ConstrainedUnion, assign_stable_ids, decision_pairs, factorize, pair_id, prepare_records,
                     singleton_groups, sorted_unique)
from .config import LinkConfig, LinkResult
from .survivorship import entity_rules, golden_records

ENTERPRISE_COLS = ["uscc", "uscc_status", "uscc_note", "org_code", "reg_no", "tax_no", "name",
                   "name_core", "name_region", "legal_rep_name", "legal_rep_id_number",
                   "founded_date", "address", "industry_code", "region_code", "updated_at"]
GOLDEN_ELEMENTS = ["uscc", "org_code", "name", "name_core", "legal_rep_name", "founded_date",
                   "address", "industry_code", "region_code"]
IDENTIFIER_RULES = ("org_code", "tax_no", "reg_no")   # the old identifiers the USCC replaced


def county_of(region: pd.Series) -> pd.Series:
    """County-level region codes; NULL for a province or prefecture (…00: an address whose
    county was abolished, 崇文区, resolves no finer) — it does not tell two counties apart."""
    return region.where(~region.str.endswith("00").fillna(True))


def identifier_keys(df: pd.DataFrame) -> pd.DataFrame:
    """Usable USCC and the organisation code however the record carries it (Arrow strings)."""
    text = lambda col: df[col].astype("string[pyarrow]")   # noqa: E731
    status, uscc, tax = text("uscc_status"), text("uscc"), text("tax_no")
    usable = uscc.notna() & (status.isna() | status.isin(["valid", "repaired"]))
    county = county_of(text("region_code"))
    return pd.DataFrame({
        "uscc": uscc.where(usable),
        "org": text("org_code").fillna(uscc.where(usable).str[8:17]),
        "tax": tax,
        "tax_org": tax.where(tax.str.len() == 15).str[6:15],
        "reg": text("reg_no"),
        # name + legal representative (an individual business's operator) + county: one shop
        # name (徐记五金店) and operator name recur from county to county
        "name_key": text("name_core") + "|" + text("legal_rep_name") + "|" + county.fillna(""),
        "county": county,
        "name_any_region": text("name_core") + "|" + text("legal_rep_name"),
        # the same representative at the same address (a name written with another prefix)
        "rep_address": text("legal_rep_name") + "|" + text("address"),
        # an individual business (USCC 92...) by its operator and county, for a record another
        # office filed under the operator's name
        "operator": (text("legal_rep_name") + "|" + county).where(
            uscc.where(usable).str.startswith("92").fillna(False)
            | (text("name_core") == text("legal_rep_name")).fillna(False)),
        "named_after_operator": (text("name_core") == text("legal_rep_name")).fillna(False),
    }, index=df.index)


def _unique_target(keys: pd.Series, target: np.ndarray) -> pd.Series:
    """key -> target, for keys that point at exactly one target (ambiguous keys prove nothing)."""
    codes, uniques = factorize(keys)
    present = codes >= 0
    span = int(target.max()) + 1 if len(target) else 1
    pairs = sorted_unique(codes[present] * span + target[present])   # distinct (key, target)
    key, value = pairs // span, pairs % span
    once = np.bincount(key, minlength=len(uniques))[key] == 1
    return pd.Series(value[once], index=pd.Index(np.asarray(uniques, dtype=object)[key[once]]))


def _lookup(values: pd.Series, target: pd.Series) -> np.ndarray:
    """values.map(target) as float (NaN where absent), hashed in Arrow."""
    at = pc.index_in(pa.array(values, type=pa.large_string()),
                     value_set=pa.array(target.index.to_numpy(dtype=object), type=pa.large_string()))
    table = np.append(target.to_numpy(dtype=np.float64), np.nan)
    return table[at.fill_null(-1).to_numpy(zero_copy_only=False)]


def _first_position(keys: pd.Series) -> np.ndarray:
    """The position of the first record with the same key (NaN where the key is NULL)."""
    codes, uniques = factorize(keys)
    first = np.full(len(uniques) + 1, np.nan)
    present = np.flatnonzero(codes >= 0)
    distinct, at = np.unique(codes[present], return_index=True)
    first[distinct] = present[at]
    return first[codes]


def name_targets(keys: pd.DataFrame, bare: np.ndarray, cluster: np.ndarray, no_region: np.ndarray) -> np.ndarray:
    """The cluster each record without any code joins by name + legal representative, NaN for
    none: the one cluster of coded records with the same name, representative and county; a
    record without a county (or only a province's) takes the one cluster with that name and
    representative anywhere; then the one cluster with the same representative at the same
    address; then, for a record named after its representative (an individual business filed
    under its operator's name), the one individual business (USCC 92...) of that operator in the
    county.
    Ambiguous keys (two clusters) link nothing."""
    coded = pd.Series(~bare, index=keys.index)
    hit = _lookup(keys["name_key"].where(pd.Series(bare, index=keys.index)),
                  _unique_target(keys["name_key"].where(coded), cluster))
    tries = [("name_any_region", bare & no_region, ~bare),
             ("rep_address", bare, ~bare),
             ("operator", bare & keys["named_after_operator"].to_numpy(), ~bare)]
    for column, own, targets in tries:   # each only where the ones before found nothing
        more = _lookup(keys[column].where(pd.Series(own & np.isnan(hit), index=keys.index)),
                       _unique_target(keys[column].where(pd.Series(targets, index=keys.index)), cluster))
        hit = np.where(np.isnan(hit), more, hit)
    return hit


def contradicted(df: pd.DataFrame, records: np.ndarray, targets: np.ndarray, cluster: np.ndarray) -> np.ndarray:
    """Whether each record (a position) contradicts its target cluster (a label of `cluster`) on
    the founded date and on the address both: the record knows each, the cluster's records know
    it too, and none of them has the record's. A shop and its operator's name recur within a
    county (李记便利店 run by 李伟), so a name match is weak evidence: two facts against it
    outweigh it, one alone does not (an enterprise moves; a date is mistyped)."""
    if not len(records):
        return np.zeros(0, dtype=bool)
    facts = {"founded_date": df["founded_date"].astype("string"), "address": df["address"].astype("string")}
    members = np.flatnonzero(np.isin(cluster, sorted_unique(targets)))
    pairs = pd.DataFrame({"i": np.arange(len(records)), "c": targets}).merge(
        pd.DataFrame({"c": cluster[members], "m": members}), on="c")
    i, m = pairs["i"].to_numpy(), pairs["m"].to_numpy()
    out = np.ones(len(records), dtype=bool)
    for values in facts.values():
        values = values.reset_index(drop=True)
        theirs = values.iloc[m].reset_index(drop=True)
        known = theirs.notna().to_numpy()
        agree = values.iloc[records[i]].reset_index(drop=True).eq(theirs).fillna(False).to_numpy(bool)
        cluster_knows = np.bincount(i, weights=known, minlength=len(records)) > 0
        cluster_agrees = np.bincount(i, weights=agree, minlength=len(records)) > 0
        out &= values.iloc[records].notna().to_numpy() & cluster_knows & ~cluster_agrees
    return out


def identifier_edges(keys: pd.DataFrame, group: np.ndarray, rules: tuple = IDENTIFIER_RULES) -> pd.DataFrame:
    """(record, representative record, rule): records without a USCC join the USCC holder
    sharing their org code / tax number / registration number, tried in the stewards' rule
    order (linkage.yaml enterprise.rules); the rest join each other."""
    order = [r for r in rules if r in IDENTIFIER_RULES]
    by_order = lambda items: sorted(items, key=lambda item: order.index(item[0]))  # noqa: E731
    n = len(keys)
    holder = keys["uscc"].notna().to_numpy()
    rep = pd.Series(np.arange(n)).groupby(group).transform("min").to_numpy()
    edges, resolved = [], holder.copy()
    lookups = [("org_code", "org", ["org"]), ("tax_no", "tax", ["tax"]),
               ("tax_no", "org", ["tax_org"]), ("reg_no", "reg", ["reg"])]
    for rule, holder_col, own_cols in by_order(lookups):
        target = _unique_target(keys[holder_col].where(pd.Series(holder, index=keys.index)), rep)
        for own in own_cols:
            hit = _lookup(keys[own], target)
            take = ~resolved & ~np.isnan(hit)
            edges.append(pd.DataFrame({"a": np.flatnonzero(take), "b": hit[take].astype(np.int64), "rule": rule}))
            resolved |= take
    rest = pd.Series(~resolved, index=keys.index)
    for rule, col in by_order([("org_code", "org"), ("tax_no", "tax_org"), ("tax_no", "tax"), ("reg_no", "reg")]):
        first = _first_position(keys[col].where(rest))
        take = ~np.isnan(first) & (first != np.arange(n))
        edges.append(pd.DataFrame({"a": np.flatnonzero(take), "b": first[take].astype(np.int64), "rule": rule}))
    return pd.concat(edges, ignore_index=True)


def link_enterprises(records: pd.DataFrame, *, previous_xref: pd.DataFrame | None = None,
                     previous_ids: pd.Series | None = None, decisions: pd.DataFrame | None = None,
                     survivorship: dict, run_id: str,
                     config: LinkConfig | None = None) -> LinkResult:
    seconds: dict[str, float] = {}
    clock = perf_counter()
    spec = entity_rules(survivorship, "enterprise")
    df = prepare_records(records, ENTERPRISE_COLS, "enterprise records")
    n = len(df)
    keys = identifier_keys(df)
    key_to_pos = pd.Series(np.arange(n), index=df["_key"].to_numpy()) \
        if decisions is not None and len(decisions) else pd.Series(dtype=np.int64)
    steward_match, steward_non = decision_pairs(decisions, key_to_pos)

    holder = keys["uscc"].notna().to_numpy()
    group = singleton_groups(n)
    codes, uniq = pd.factorize(keys["uscc"])
    group[holder] = codes[holder]
    cannot: dict[int, set[int]] = {}
    for a, b in steward_non:
        cannot.setdefault(int(a), set()).add(int(b))
        cannot.setdefault(int(b), set()).add(int(a))
    uf = ConstrainedUnion(len(uniq), cannot, group)
    rule = np.where(holder, "uscc", "singleton").astype(object)
    link_edges = []
    for a, b in steward_match:
        if uf.union(int(group[a]), int(group[b]), force=True) is None:
            rule[[a, b]] = "steward"
            link_edges.append((a, b, "steward"))
    edges = identifier_edges(keys, group, (config or LinkConfig()).rules)
    for a, b, r in edges.itertuples(index=False):
        if uf.union(int(group[a]), int(group[b])) is None and rule[a] != "steward":
            rule[a] = r
            rule[b] = r if rule[b] == "singleton" else rule[b]
            link_edges.append((a, b, r))
    seconds["identifiers"] = round(perf_counter() - clock, 4)
    clock = perf_counter()

    # name + legal representative for records carrying no identifier at all
    cluster = uf.labels(group)
    bare = keys[["uscc", "org", "tax", "reg"]].isna().all(axis=1).to_numpy()
    hit = name_targets(keys, bare, cluster, keys["county"].isna().to_numpy())
    rep = pd.Series(np.arange(n)).groupby(cluster).transform("min").to_numpy()
    rep_of_cluster = pd.Series(rep).groupby(cluster).first()
    review_rows, conflict_rows = [], []
    named = np.flatnonzero(~np.isnan(hit))
    refused = contradicted(df, named, hit[named].astype(np.int64), cluster)
    for a, no in zip(named, refused):
        b = int(rep_of_cluster[int(hit[a])])
        if no:
            conflict_rows.append((a, b))
        elif uf.union(int(group[a]), int(group[b])) is None:
            rule[a] = "name"
            link_edges.append((a, b, "name"))
        else:
            review_rows.append((a, b))
    # bare records sharing name + legal representative only with each other
    first = _first_position(keys["name_key"].where(pd.Series(bare & np.isnan(hit), index=keys.index)))
    pairs = np.flatnonzero(~np.isnan(first) & (first != np.arange(n)))
    refused = contradicted(df, pairs, cluster[first[pairs].astype(np.int64)], cluster)
    for a, no in zip(pairs, refused):
        b = int(first[a])
        if no:
            conflict_rows.append((a, b))
        elif uf.union(int(group[a]), int(group[b])) is None:
            rule[a] = rule[b] = "name"
            link_edges.append((a, b, "name"))
    cluster = uf.labels(group)
    size = pd.Series(cluster).map(pd.Series(cluster).value_counts()).to_numpy()
    rule = np.where(size > 1, rule, "singleton")
    seconds["names"] = round(perf_counter() - clock, 4)
    clock = perf_counter()

    ids, history = assign_stable_ids(df["_key"], cluster, df, previous_xref, "enterprise_id", "E",
                                     "enterprise", run_id, previous_ids)
    xref = pd.DataFrame({"source_system": df["source_system"],
                         "source_record_id": df["source_record_id"], "enterprise_id": ids,
                         "match_rule": pd.Series(rule, dtype="string"),
                         "match_score": pd.Series(pd.NA, index=df.index, dtype="Float64")})
    gold_in = df.assign(enterprise_id=ids.to_numpy(), uscc=keys["uscc"],
                        org_code=keys["org"].fillna(keys["tax_org"]))
    gold_in["founded_date"] = as_datetime(gold_in["founded_date"])
    golden = golden_records(gold_in, "enterprise_id", GOLDEN_ELEMENTS, spec)
    founded = pd.to_datetime(golden["founded_date"])   # date32 in parquet, like birth_date
    golden["founded_date"] = founded.dt.date.astype(object).where(founded.notna(), None)
    seconds["ids_golden"] = round(perf_counter() - clock, 4)

    ev = pd.DataFrame(link_edges, columns=["a", "b", "rule"])
    src, rid = df["source_system"].to_numpy(), df["source_record_id"].to_numpy()
    a, b = ev["a"].to_numpy(dtype=np.int64), ev["b"].to_numpy(dtype=np.int64)
    evidence = pd.DataFrame({"left_source_system": src[a], "left_source_record_id": rid[a],
                             "right_source_system": src[b], "right_source_record_id": rid[b],
                             "enterprise_id": ids.to_numpy()[a], "rule": ev["rule"]},
                            dtype="string")
    review = pd.concat([_name_review(df, review_rows), _name_review(df, conflict_rows, "conflict")],
                       ignore_index=True)
    stats = {"records": n, "clusters": int(len(sorted_unique(cluster))),
             "match_rule": {k: int(v) for k, v in xref["match_rule"].value_counts().items()},
             "review": int(len(review)), "pairs_compared": int(len(ev)), "seconds": seconds}
    return LinkResult(xref=xref, golden=golden, history=history, review=review,
                      evidence=evidence, stats=stats)


def _name_review(df: pd.DataFrame, rows: list[tuple[int, int]], reason: str = "constraint") -> pd.DataFrame:
    """Name matches not linked — refused by a constraint, or in conflict on founded date and
    address (contradicted): a steward should look."""
    cols = ["pair_id", "entity", "left_source_system", "left_source_record_id",
            "right_source_system", "right_source_record_id", "score", "evidence", "reason",
            "status"]
    if not rows:
        return pd.DataFrame(columns=cols).astype({c: "string" for c in cols if c != "score"})
    a = np.array([r[0] for r in rows]); b = np.array([r[1] for r in rows])
    keys = df["_key"].to_numpy()
    out = pd.DataFrame({
        "pair_id": pair_id(pd.Series(keys[a]), pd.Series(keys[b])).to_numpy(),
        "entity": "enterprise",
        "left_source_system": df["source_system"].to_numpy()[a],
        "left_source_record_id": df["source_record_id"].to_numpy()[a],
        "right_source_system": df["source_system"].to_numpy()[b],
        "right_source_record_id": df["source_record_id"].to_numpy()[b],
        "score": np.nan, "evidence": json.dumps({"name_core": 1, "legal_rep_name": 1} if reason == "constraint" else
                                                {"name_core": 1, "legal_rep_name": 1, "founded_date": 0, "address": 0}),
        "reason": reason, "status": "open"})
    return out.astype({c: "string" for c in cols if c != "score"})
