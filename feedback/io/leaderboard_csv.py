"""The leaderboard as CSV: one model a row, best first, the columns of the page's table."""

import csv
import io
from dataclasses import asdict, fields

from feedback.selectors import Leaderboard, ModelStanding

MEDIA_TYPE = "text/csv"
COLUMNS = [field.name for field in fields(ModelStanding)]
# A cell opening with one of these is a formula to a spreadsheet: a model named
# '=HYPERLINK(...)' must arrive as text (OWASP's CSV injection advice: a leading quote).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: object) -> object:
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return "" if value is None else value


def write_leaderboard(board: Leaderboard) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    for standing in board.models:
        row = asdict(standing)
        writer.writerow([_cell(row[column]) for column in COLUMNS])
    return buffer.getvalue()
