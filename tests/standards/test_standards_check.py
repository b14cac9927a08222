"""check_standards: clean on the shipped standards, each kind of problem found on a broken copy."""
from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from govdata.standards.check import Problem, check_standards, main
from govdata.standards.registry import STANDARDS_ROOT

GONGAN = """name: gongan
department: 公安局人口户籍
kind: person
connection: sqlite:///gongan.sqlite
table: T_RK_JBXX
primary_key: RKBH
columns: {SFZHM: id_number, XM: nom}
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A private copy of the shipped standards (YAML and CSV only) to break."""
    copy = tmp_path.resolve() / "standards"
    shutil.copytree(STANDARDS_ROOT, copy, ignore=shutil.ignore_patterns("*.py", "__pycache__", "sources"))
    return copy


PERSON_UPDATED_AT = """  updated_at:
    type: timestamp
    zh: 更新时间
    en: when the department last changed the record
    standard: GB/T 7408-2005
    rule: timestamp not in the future; used by most_recent survivorship
    max_length: 40
enterprise:
"""


def append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text)


def replace(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_shipped_standards_have_no_problems():
    assert check_standards() == []
    assert main([]) == 0


# (how to break the copy, file relative to the root, location, message)
BREAKAGES: list[tuple[Callable[[Path], None], str, str, str]] = [
    (lambda r: append(r / "codes/sex.csv", "1,男性\n"),
     "codes/sex.csv", "line 3, 6", "duplicate code '1'"),
    (lambda r: append(r / "codes/id_document_type.csv", ",空白证件\n"),
     "codes/id_document_type.csv", "line 14", "empty code"),
    (lambda r: (r / "codes/sex.csv").write_text("code,nom\n0,a\n1,b\n2,c\n9,d\n", encoding="utf-8"),
     "codes/sex.csv", "(header)", "missing columns ['name']; expected columns ['code', 'name']"),
    (lambda r: replace(r / "elements.yaml", "code_table: sex\n", "code_table: gender\n"),
     "elements.yaml", "person.sex.code_table", "unknown code table 'gender'; expected one of codes/*.csv"),
    (lambda r: replace(r / "codes/region.csv", "110103,崇文区,county,abolished,1981,2010,110101,",
                       "110103,崇文区,county,abolished,1981,2010,119999,"),
     "codes/region.csv", "line 5", "column successors: successor not in region: 119999"),
    (lambda r: append(r / "codes/sex_alias.csv", "nan,7\n"),
     "codes/sex_alias.csv", "line 24", "column code: value not in sex: 7"),
    (lambda r: append(r / "codes/sex_alias.csv", "Male,1\n"),
     "codes/sex_alias.csv", "line 24", "column alias: expected lower-case without surrounding spaces"),
    (lambda r: append(r / "codes/region.csv", "110101,东城区,county,current,2010,,,北京市,\n"),
     "codes/region.csv", "line 3, 6825", "more than one current row for code '110101'"),
    (lambda r: append(r / "codes/channel.csv", "fax,传真,fax,maybe\n"),
     "codes/channel.csv", "line 7", "column online: expected one of ['true', 'false']"),
    (lambda r: (r / "codes/marital.csv").write_text("code,name\n10,未婚\n", encoding="utf-8"),
     "codes/marital.csv", "(file)", "code table not listed in codes/codes.yaml"),
    (lambda r: replace(r / "codes/codes.yaml", "  source: GB/T 2261.1-2003 人的性别代码\n", ""),
     "codes/codes.yaml", "sex.source", "expected a non-empty value (cite the source)"),
    (lambda r: replace(r / "elements.yaml", "    type: date\n", "    type: day\n"),
     "elements.yaml", "person.birth_date.type",
     "expected one of string, name, id_number, uscc, org_code, reg_no, tax_no, code, date, timestamp, "
     "integer, phone, address"),
    (lambda r: replace(r / "elements.yaml", "    code_table: channel\n", ""),
     "elements.yaml", "application.channel.code_table", "expected a code table for an element of type code"),
    (lambda r: replace(r / "elements.yaml", PERSON_UPDATED_AT, "enterprise:\n"),
     "elements.yaml", "person.updated_at", "missing element: every kind has an optional timestamp updated_at"),
    (lambda r: replace(r / "elements.yaml", "    pattern: '^S[0-9]{4}$'\n", "    pattern: '^S[0-9]{5}$'\n"),
     "elements.yaml", "application.service_item_code.pattern",
     "codes of table service_item do not match it: S0001, S0002, S0003, S0004, S0005"),
    (lambda r: replace(r / "codes/codes.yaml", "  pattern: {code: '^[0129]$'}", "  pattern: {code: '^[0129$'}"),
     "codes/codes.yaml", "sex",
     "malformed shape rules for this table (error: unterminated character set at position 1)"),
    (lambda r: replace(r / "survivorship.yaml", "    phone: most_recent\n", "    mobile: most_recent\n"),
     "survivorship.yaml", "person.elements.mobile", "expected an element of kind person"),
    (lambda r: replace(r / "row_rules.yaml", "[name, name_pinyin]", "[name, pinyin]"),
     "row_rules.yaml", "person.required_one_of", "expected elements of kind person, not 'pinyin'"),
]


@pytest.mark.parametrize(("breakage", "file", "location", "message"), BREAKAGES,
                         ids=[b[2] + ":" + b[3][:25] for b in BREAKAGES])
def test_broken_copy_reports_each_problem(root, breakage, file, location, message):
    assert check_standards(root) == []
    breakage(root)
    assert check_standards(root) == [Problem(str(root / file), location, message)]


def test_broken_linkage_yaml_is_rejected(root):
    assert check_standards(root) == []
    file = str(root / "linkage.yaml")
    replace(root / "linkage.yaml", "  match_threshold: 14.0\n", "  match_threshold: '14.0'\n  match_treshold: 14.0\n")
    assert check_standards(root) == [
        Problem(file, "person.match_threshold", "expected a number, not '14.0'"),
        Problem(file, "person.match_treshold",
                "unknown setting; expected one of blocking, comparisons, distinct_sources, estimate_weights, "
                "id_max_edits, m_prior, match_threshold, max_block_size, min_pairs_for_ecm, review_threshold, "
                "rules, sorted_window, u_prior")]


def test_broken_linkage_declaration_is_rejected_one_line_each(root):
    file = str(root / "linkage.yaml")
    edits = [("  review_threshold: 12.0\n", "  review_threshold: 14.0\n"),
             ("comparator: sex_agree,", "comparator: sex_equal,"),
             ("{name: b_phone, columns: [phone]}", "{name: b_phone, columns: [mobile]}"),
             ("columns: [region], m: 0.80, u: 0.20}", "columns: [region], m: 1.2, u: 0.20}"),
             ("columns: [birth], m: 0.97, u: 0.001}", "columns: [birth], m: 0.001, u: 0.97}"),
             ("columns: [name], m: 0.90,", "columns: [name, pinyin], m: 0.90,"),
             ("rules: [uscc, org_code, tax_no, reg_no, name]", "rules: [uscc, tax_no, reg_no, name]")]
    for old, new in edits:
        replace(root / "linkage.yaml", old, new)
    assert check_standards(root) == [
        Problem(file, "person.review_threshold",
                "must be below match_threshold (14.0 >= 14.0): the review band would be empty"),
        Problem(file, "person.blocking.b_phone.columns",
                "unknown column 'mobile'; expected one of birth_day, birth_year, surname_initial, last_char, pinyin, "
                "phone, document, latin_key, latin_joined, address, name, sex, region"),
        Problem(file, "person.comparisons.name.columns", "comparator name_agree reads 1 column(s), not 2"),
        Problem(file, "person.comparisons.birth",
                "m (0.001) must exceed u (0.97): agreement must be evidence for a match"),
        Problem(file, "person.comparisons.sex.comparator",
                "unknown comparator 'sex_equal'; expected one of agreement_only, birth_close, exact, id_within_edits, latin_agree, "
                "name_agree, name_order_agree, pinyin_or_latin_agree, region_agree, sex_agree"),
        Problem(file, "person.comparisons.region.m", "expected a probability strictly between 0 and 1, not 1.2"),
        Problem(file, "enterprise.rules", "expected each of uscc, org_code, tax_no, reg_no, name once, in the order "
                                          "to apply them, not ['uscc', 'tax_no', 'reg_no', 'name']")]


def test_linkage_declaration_reaches_the_link_stage():
    from govdata.stages.link_inputs import link_config
    from govdata.transforms.linkage import LinkConfig

    assert link_config("person") == LinkConfig(match_threshold=14.0, review_threshold=12.0)
    shipped = LinkConfig()
    assert [r.name for r in shipped.blocking][:3] == ["b_birth", "b_pinyin_year", "b_phone"]
    assert shipped.m_prior["document"] == 0.95 and shipped.u_prior["document"] == 0.000001
    assert shipped.rules == ("uscc", "org_code", "tax_no", "reg_no", "name")
    assert [(c.name, c.u_scaled_by) for c in shipped.comparisons if c.u_scaled_by] == \
        [("phone", "phone_persons"), ("address", "address_persons")]


def test_linkage_yaml_kinds_and_types(root):
    (root / "linkage.yaml").write_text("person: {distinct_sources: 1, sorted_window: 5.5, m_prior: {id: 0.9}}\n"
                                       "enterprise: [match_threshold]\napplication: {}\n", encoding="utf-8")
    file = str(root / "linkage.yaml")
    assert check_standards(root) == [
        Problem(file, "person.distinct_sources", "expected true or false, not 1"),
        Problem(file, "person.sorted_window", "expected a whole number, not 5.5"),
        Problem(file, "enterprise", "expected a mapping of setting -> value"),
        Problem(file, "application", "unknown kind; expected one of person, enterprise")]


def test_source_mapping_to_unknown_element(root, tmp_path):
    sources = tmp_path / "sources"
    sources.mkdir()
    (sources / "gongan.yaml").write_text(GONGAN, encoding="utf-8")
    (sources / "copy.yaml").write_text(GONGAN.replace("XM: nom", "XM: name"), encoding="utf-8")
    expected_elements = ", ".join(["id_number", "id_type", "doc_number", "name", "name_latin", "name_pinyin", "sex", "birth_date",
                                   "ethnicity", "phone", "address", "region_code", "updated_at"])
    assert check_standards(root, sources) == [
        Problem(str(sources / "gongan.yaml"), "columns.XM",
                f"expected an element of kind person ({expected_elements}), got 'nom'")]
    (sources / "gongan.yaml").write_text(GONGAN.replace("XM: nom", "XM: name"), encoding="utf-8")
    assert check_standards(root, sources) == [
        Problem(str(sources / "gongan.yaml"), "name",
                f"duplicate source name 'gongan' (also {sources / 'copy.yaml'})")]


def test_sources_checked_against_the_copy_not_the_shipped_elements(root, tmp_path):
    sources = tmp_path / "sources"
    sources.mkdir()
    (sources / "gongan.yaml").write_text(GONGAN.replace("XM: nom", "XM: name"), encoding="utf-8")
    assert check_standards(root, sources) == []
    replace(root / "elements.yaml", "  name:\n    type: name\n    zh: 姓名\n", "  full_name:\n    type: name\n    zh: 姓名\n")
    replace(root / "row_rules.yaml", "[name, name_pinyin]", "[full_name, name_pinyin]")
    replace(root / "survivorship.yaml", "    name: trust_order\n    name_pinyin", "    name_pinyin")
    problems = check_standards(root, sources)
    assert [(p.file, p.location) for p in problems] == [(str(sources / "gongan.yaml"), "columns.XM")]


def test_command_line_prints_problems_and_fails(root, capsys):
    append(root / "codes/sex.csv", "1,男性\n")
    assert main([str(root)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{root / 'codes/sex.csv'}: line 3, 6: duplicate code '1'", "1 problem(s)"]
