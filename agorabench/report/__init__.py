"""The HTML report of a results database: `agora report` calls write_report."""
from agorabench.report.page import write_report

__all__ = ["write_report"]
