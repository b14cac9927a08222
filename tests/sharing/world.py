"""A small service-hall world for the sharing tests, loaded through the real build and loader:
three persons, four certificates, four applications. Every expected answer in the tests is
read off these rows by hand."""
from __future__ import annotations

from datetime import date, timedelta

import pandas as pd

KEY = bytes.fromhex("5a" * 32)
KEY_HEX = KEY.hex()
RUN = "share-r1"
ID_ZHANG = "110105196612150016"     # 张三: golden record from gongan, address from minzheng
ID_LI = "110105197112010029"        # 李四: no address anywhere
ID_WANG = "310115198503020042"      # 王芳: holds nothing in the certificate library
ID_NOBODY = "110101199003070036"    # valid checksum, in no department
RAW_SECRETS = (ID_ZHANG, ID_LI, ID_WANG, ID_NOBODY)
TODAY = date.today()
RID_ZHANG = "RID-0001"              # 张三's valid resident ID card (certificate number)
RID_ZHANG_OLD = "RID-0000"          # 张三's expired one
SSC_LI = "SSC-0002"                 # 李四's social security card
MAR_ZHANG = "MAR-0003"              # 张三's marriage certificate, revoked


def link_frames() -> dict[str, pd.DataFrame]:
    golden = pd.DataFrame({
        "person_id": ["P00000000000a", "P00000000000b", "P00000000000c"],
        "id_number": [ID_ZHANG, ID_LI, ID_WANG],
        "name": ["张三", "李四", "王芳"], "name_pinyin": ["zhangsan", "lisi", "wangfang"],
        "sex": ["1", "2", "2"],
        "birth_date": [date(1966, 12, 15), date(1971, 12, 1), date(1985, 3, 2)],
        "ethnicity": ["01", "01", "03"], "phone": ["13812345678", None, None],
        "address": ["北京市朝阳区建国路1号", None, "上海市浦东新区世纪大道100号"],
        "region_code": ["110105", "110105", "310115"],
        "record_count": [2, 1, 1], "source_count": [2, 1, 1],
        "lineage": ['{"name": "gongan", "sex": "gongan", "birth_date": "gongan", "ethnicity": "gongan", '
                    '"address": "minzheng", "region_code": "gongan"}',
                    '{"name": "shebao", "sex": "shebao", "birth_date": "shebao", "ethnicity": "shebao", '
                    '"region_code": "shebao"}',
                    '{"name": "gongan", "sex": "gongan", "birth_date": "gongan", "ethnicity": "gongan", '
                    '"address": "gongan", "region_code": "gongan"}'],
    })
    xref = pd.DataFrame({
        "source_system": ["gongan", "minzheng", "shebao", "gongan"], "source_record_id": ["1", "7", "2", "3"],
        "person_id": ["P00000000000a", "P00000000000a", "P00000000000b", "P00000000000c"],
        "match_rule": ["id", "id", "id", "id"], "match_score": [1.0] * 4,
    })
    return {"person_xref": xref, "person_golden": golden}


def std_frames() -> dict[str, pd.DataFrame]:
    ts = pd.Timestamp
    gongan = pd.DataFrame({"source_system": "gongan", "source_record_id": ["1", "3"], "kind": "person",
                           "id_number": [ID_ZHANG, ID_WANG], "name": ["张三", "王芳"],
                           "sex": ["1", "2"], "birth_date": [date(1966, 12, 15), date(1985, 3, 2)]})
    minzheng = pd.DataFrame({"source_system": "minzheng", "source_record_id": ["7"], "kind": "person",
                             "id_number": [ID_ZHANG], "name": ["张三"], "sex": ["1"],
                             "birth_date": [date(1966, 12, 15)]})
    shebao = pd.DataFrame({"source_system": "shebao", "source_record_id": ["2"], "kind": "person",
                           "id_number": [ID_LI], "name": ["李四"], "sex": ["2"], "birth_date": [date(1971, 12, 1)]})
    certs = pd.DataFrame({
        "source_system": "zhengzhao", "source_record_id": ["c1", "c2", "c3", "c4"], "kind": "certificate",
        "certificate_no": [RID_ZHANG, RID_ZHANG_OLD, SSC_LI, MAR_ZHANG],
        "certificate_type": ["resident_id", "resident_id", "social_security_card", "marriage"],
        "holder_id_number": [ID_ZHANG, ID_ZHANG, ID_LI, ID_ZHANG], "holder_uscc": [None] * 4,
        "issuer": ["北京市公安局朝阳分局", "北京市公安局朝阳分局", "北京市人力资源和社会保障局", "朝阳区民政局"],
        "issue_date": [date(2020, 1, 1), date(2000, 1, 1), date(2019, 5, 1), date(1995, 5, 1)],
        "expiry_date": [TODAY + timedelta(days=1000), TODAY - timedelta(days=30), TODAY + timedelta(days=500), None],
        "status": ["valid", "expired", "valid", "revoked"],
    })
    hall = pd.DataFrame({
        "source_system": "zhengwu", "source_record_id": ["a1", "a2", "a3", "a4"], "kind": "application",
        "application_no": ["N1", "N2", "N3", "N4"],
        "applicant_id_number": [ID_ZHANG, ID_LI, ID_ZHANG, ID_WANG], "applicant_uscc": [None] * 4,
        "service_item_code": ["S0002", "S0006", "S0005", "S0002"],
        "channel": ["window", "window", "web", "window"], "region_code": ["110105", "110105", "110105", "310115"],
        "submitted_at": [ts("2024-09-02 09:00"), ts("2024-09-03 09:00"), ts("2024-09-04 09:00"), ts("2024-09-05 09:00")],
        "accepted_at": [ts("2024-09-02 10:00"), ts("2024-09-03 10:00"), ts("2024-09-04 10:00"), ts("2024-09-05 10:00")],
        "completed_at": [ts("2024-09-03 10:00"), pd.NaT, pd.NaT, pd.NaT],
        "legal_limit_days": [20, 15, 10, 20], "rating": pd.array([5, None, None, None], dtype="Int64"),
        "certificate_no": [None] * 4,
    })
    return {"gongan": gongan, "minzheng": minzheng, "shebao": shebao, "zhengzhao": certs, "zhengwu": hall}


def build_world() -> dict[str, pd.DataFrame]:
    from govdata.standards.registry import load_standards
    from govdata.warehouse.build import build_tables

    quarantine = pd.DataFrame(columns=["source_system", "source_record_id", "element", "reason_code", "masked_value",
                                       "row_rejected", "message"])
    return build_tables(link_frames(), std_frames(), quarantine, load_standards(), KEY, RUN)


def etl_run() -> pd.DataFrame:
    now = pd.Timestamp.now().floor("s")
    return pd.DataFrame({"run_id": [RUN], "started_at": [now], "finished_at": [now], "status": ["success"],
                         "counts": ["{}"]})


def load_world(url: str) -> None:
    from govdata.warehouse.load import init_warehouse, load_tables

    init_warehouse(url)
    tables = build_world()
    tables["etl_run"] = etl_run()
    load_tables(url, tables, RUN)
