"""Page texts (govdata/templates/<page>.text.yaml): every language says everything."""
import pytest

from govdata.page_text import LANGUAGES, page_text


def keys(tree, prefix=""):
    if not isinstance(tree, dict):
        return {prefix}
    return set().union(*(keys(v, f"{prefix}.{k}") for k, v in tree.items())) if tree else {prefix}


@pytest.mark.parametrize("page", ["findings", "review"])
def test_every_language_has_every_text(page):
    texts = page_text(page)
    assert sorted(texts) == sorted(LANGUAGES)
    zh, en = (keys(texts[lang]) for lang in LANGUAGES)
    assert (sorted(zh - en), sorted(en - zh)) == ([], [])


def test_texts_are_read_from_the_yaml():
    assert page_text("findings")["en"]["title"] == "Findings"
    assert page_text("review")["zh-CN"]["text"]["match"] == "同一人 (M)"
    assert page_text("review")["zh-CN"]["id_status"]["repaired"] == "已修复"
