"""A tiny hand-built world for warehouse tests: 3 persons, 1 enterprise, 5 applications,
5 certificates; every mart figure in the tests is computed by hand from these rows."""
from __future__ import annotations

from datetime import date, timedelta

import pandas as pd

from govdata.standards.model import Standards

KEY = bytes.fromhex("11" * 32)
RUN = "r1"
ID_P1 = "110105196612150013"
ID_P2 = "110105197112010026"
ID_P3 = "110106197112150011"
ID_UNMATCHED = "110105199001010035"
PHONE_P1 = "13812345678"
USCC_E1 = "91110000MA0000001X"
REP_ID_E1 = "110105198001010055"
RAW_SECRETS = (ID_P1, ID_P2, ID_P3, ID_UNMATCHED, PHONE_P1, REP_ID_E1)


def next_month(today: date) -> date:
    return (today.replace(day=1) + timedelta(days=32)).replace(day=1)


def standards() -> Standards:
    s = lambda d: pd.DataFrame(d, dtype="string")  # noqa: E731 - code tables are string frames
    return Standards(elements={}, code_tables={
        "channel": s({"code": ["window", "web", "mobile"], "name": ["窗口", "网上", "移动端"],
                      "online": ["false", "true", "true"]}),
        "service_item": s({"code": ["S1", "S2"], "name": ["居民身份证换领", "企业设立登记"],
                           "legal_limit_days": ["5", "3"], "department": ["公安局", "市场监管局"]}),
        "region": s({"code": ["110000", "110105", "110106", "110103"], "name": ["北京市", "朝阳区", "丰台区", "崇文区"],
                     "level": ["province", "county", "county", "county"],
                     "status": ["current", "current", "current", "abolished"],
                     "valid_from": ["1981", "1981", "1981", "1981"], "valid_to": ["", "", "", "2010"],
                     "successors": ["", "", "", "110101"], "province": ["北京市"] * 4, "prefecture": ["", "", "", ""]}),
    })


def link_frames() -> dict[str, pd.DataFrame]:
    today = date.today()
    nm = next_month(today)
    golden = pd.DataFrame({
        "person_id": ["P000000000001", "P000000000002", "P000000000003"],
        "id_number": [ID_P1, ID_P2, ID_P3],
        "name": ["张三", "李四", "王五"], "name_pinyin": ["zhangsan", "lisi", "wangwu"],
        "sex": ["1", "2", "1"],
        # P1 (man) reaches 60 and P2 (woman) 55 next month; P3 (man) reaches 55 only.
        "birth_date": [date(nm.year - 60, nm.month, 15), date(nm.year - 55, nm.month, 1), date(nm.year - 55, nm.month, 15)],
        "ethnicity": ["01", "01", "03"], "phone": [PHONE_P1, None, None],
        "address": ["北京市朝阳区建国路1号", None, None], "region_code": ["110105", "110105", "110106"],
        "record_count": [2, 1, 1], "source_count": [2, 1, 1],
        "lineage": ['{"name": "gongan"}', '{"name": "gongan"}', '{"name": "gongan"}'],
    })
    xref = pd.DataFrame({
        "source_system": ["gongan", "gongan", "gongan", "shebao"], "source_record_id": ["1", "2", "3", "9"],
        "person_id": ["P000000000001", "P000000000002", "P000000000003", "P000000000001"],
        "match_rule": ["id", "id", "singleton", "id"], "match_score": [1.0, 1.0, 1.0, 1.0],
    })
    ent = pd.DataFrame({"enterprise_id": ["E000000000001"], "uscc": [USCC_E1], "org_code": ["MA0000001"],
                        "name": ["北京示例科技有限公司"], "name_core": ["示例科技"], "legal_rep_name": ["赵六"],
                        "legal_rep_id_number": [REP_ID_E1], "founded_date": [date(2015, 3, 1)],
                        "address": ["北京市朝阳区"], "industry_code": ["I"], "region_code": ["110105"],
                        "record_count": [1], "source_count": [1], "lineage": ['{"name": "scjg"}']})
    xref_e = pd.DataFrame({"source_system": ["scjg"], "source_record_id": ["E-1"], "enterprise_id": ["E000000000001"],
                           "match_rule": ["id"], "match_score": [1.0]})
    history = pd.DataFrame({"old_id": ["P0000000000aa"], "new_id": ["P000000000001"], "entity": ["person"],
                            "reason": ["merged"], "run_id": [RUN]})
    return {"person_xref": xref, "person_golden": golden, "enterprise_xref": xref_e, "enterprise_golden": ent,
            "person_history": history}


def std_frames() -> dict[str, pd.DataFrame]:
    today = pd.Timestamp(date.today())
    ts = pd.Timestamp
    gongan = pd.DataFrame({"source_system": "gongan", "source_record_id": ["1", "2", "3"], "kind": "person",
                           "id_number": [ID_P1, ID_P2, ID_P3]})
    shebao = pd.DataFrame({"source_system": "shebao", "source_record_id": ["9"], "kind": "person",
                           "id_number": [ID_P1]})
    scjg = pd.DataFrame({"source_system": "scjg", "source_record_id": ["E-1"], "kind": "enterprise", "uscc": [USCC_E1]})
    hall = pd.DataFrame({
        "source_system": "hall", "source_record_id": ["A1", "A2", "A3", "A4", "A5"], "kind": "application",
        "application_no": ["N1", "N2", "N3", "N4", "N5"],
        "applicant_id_number": [ID_P1, ID_P2, ID_P3, None, ID_UNMATCHED],
        "applicant_uscc": [None, None, None, USCC_E1, None],
        "service_item_code": ["S1", "S1", "S1", "S2", "S1"],
        "channel": ["web", "window", "web", "mobile", "web"],
        "region_code": ["110105", "110105", "110105", "110106", "110105"],
        "submitted_at": [ts("2024-09-27 09:00"), ts("2024-09-02 09:00"), ts("2024-09-10 09:00"),
                         ts("2024-10-08 09:00"), ts("2024-09-03 09:00")],
        "accepted_at": [ts("2024-09-27 10:00"), ts("2024-09-02 10:00"), ts("2024-09-10 10:00"),
                        ts("2024-10-08 10:00"), ts("2024-09-03 10:00")],
        # A1: Fri 27 Sep → Wed 9 Oct 2024 across National Day: 29 Sep (Sun, adjusted workday),
        # 30 Sep, 8 Oct, 9 Oct = 4 working days. A2: 9 workdays. A4: same day = 0. A5: 1.
        "completed_at": [ts("2024-10-09 16:00"), ts("2024-09-13 16:00"), pd.NaT, ts("2024-10-08 15:00"),
                         ts("2024-09-04 11:00")],
        "legal_limit_days": [5, 5, 5, 3, 5],
        "rating": pd.array([5, 4, None, 5, 2], dtype="Int64"),
        "certificate_no": ["C2", "C2", None, "C1", None],
    })
    certs = pd.DataFrame({
        "source_system": "zhengzhao", "source_record_id": ["1", "2", "3", "4", "5"], "kind": "certificate",
        "certificate_no": ["C1", "C2", "C3", "C4", "C5"],
        "certificate_type": ["business_licence", "resident_id", "resident_id", "marriage", "resident_id"],
        "holder_id_number": [None, ID_P2, ID_P1, ID_P3, ID_P3],
        "holder_uscc": [USCC_E1, None, None, None, None],
        "issuer": ["市场监管局", "公安局", "公安局", "民政局", "公安局"],
        "issue_date": [date(2020, 1, 1)] * 5,
        "expiry_date": [(today + pd.Timedelta(days=10)).date(), (today + pd.Timedelta(days=60)).date(),
                        (today + pd.Timedelta(days=200)).date(), None, (today + pd.Timedelta(days=5)).date()],
        "status": ["valid", "valid", "valid", "valid", "revoked"],
    })
    return {"gongan": gongan, "shebao": shebao, "scjg": scjg, "hall": hall, "zhengzhao": certs}


def quarantine() -> pd.DataFrame:
    return pd.DataFrame({
        "source_system": ["gongan", "gongan", "gongan", "shebao"], "source_record_id": ["7", "8", "2", "4"],
        "element": ["id_number", "name", "phone", "birth_date"],
        "reason_code": ["bad_check_digit", "missing", "bad_format", "bad_date"],
        "masked_value": ["110105********0019", None, "139****", "19**"],
        "row_rejected": [True, True, False, False], "message": ["x", "y", "z", "w"],
    })


def dq_result() -> pd.DataFrame:
    return pd.DataFrame({
        "run_id": RUN, "source_system": "gongan", "suite": "gongan",
        "expectation": ["not_null", "unique", "valid_id"], "element": ["id_number", "id_number", "id_number"],
        "severity": ["critical", "critical", "warning"], "success": [False, True, True],
        "observed_value": ["2", "0", "0"], "unexpected_count": [2, 0, 0], "element_count": [3, 3, 3],
    })


def build_world() -> dict[str, pd.DataFrame]:
    from govdata.warehouse.build import build_tables

    tables = build_tables(link_frames(), std_frames(), quarantine(), standards(), KEY, RUN)
    tables["dq_result"] = dq_result()
    return tables
