"""Master data: link person and enterprise records across departments into stable master
IDs with golden records, a steward review queue and match evidence."""
from .config import LinkConfig, LinkResult
from .enterprises import link_enterprises
from .partition import partition_keys
from .persons import link_persons
from .review import decisions_from_csv, review_to_csv

__all__ = ["LinkConfig", "LinkResult", "link_persons", "link_enterprises", "partition_keys",
           "review_to_csv", "decisions_from_csv"]
