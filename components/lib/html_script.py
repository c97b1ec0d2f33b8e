"""The reports' one inline script: sortable and filterable tables, a card opened by a link.

Nothing is fetched: ``html.page(..., script=TABLE_SCRIPT)`` writes it inside the page, and the
page reads the same without it (every row shown, a card's heading opens it by hand).
"""

from __future__ import annotations

from components.lib.html import esc


def table_filter(ident: str, *, placeholder: str, flagged_label: str = "") -> str:
    """A search box (and a "flagged rows only" box) that filter the rows of table ``ident``."""
    box = (
        f'<input type="search" data-filter="{esc(ident)}" placeholder="{esc(placeholder)}" '
        f'aria-label="{esc(placeholder)}">'
    )
    only = (
        f'<label><input type="checkbox" data-flagged="{esc(ident)}"> {esc(flagged_label)}</label>'
        if flagged_label
        else ""
    )
    return f'<div class="controls">{box}{only}</div>'


# Sorting, filtering and opening a card: inline, no library, nothing fetched. Numbers sort as
# numbers ("1,234", "12.5 %"); a row counts as flagged when it carries an amber or red badge.
TABLE_SCRIPT = """
(() => {
  const key = (row, i) => {
    const text = row.cells[i] ? row.cells[i].textContent.trim() : '';
    const n = Number(text.replace(/[,%\\s]/g, ''));
    return text !== '' && !Number.isNaN(n) ? n : text.toLowerCase();
  };
  const order = (x, y) =>
    typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0) : typeof x === 'number' ? -1 : 1;
  for (const table of document.querySelectorAll('table.sortable')) {
    table.querySelectorAll('th').forEach((th, i) => {
      th.tabIndex = 0;
      th.title = 'sort by this column';
      const sort = () => {
        const dir = th.dataset.dir === 'asc' ? -1 : 1;
        table.querySelectorAll('th').forEach(other => delete other.dataset.dir);
        th.dataset.dir = dir === 1 ? 'asc' : 'desc';
        const body = table.tBodies[0];
        [...body.rows].sort((a, b) => dir * order(key(a, i), key(b, i))).forEach(r => body.appendChild(r));
      };
      th.addEventListener('click', sort);
      th.addEventListener('keydown', e => { if (e.key === 'Enter') sort(); });
    });
  }
  const filter = id => {
    const table = document.getElementById(id);
    const text = document.querySelector(`[data-filter="${id}"]`);
    const only = document.querySelector(`[data-flagged="${id}"]`);
    const query = text ? text.value.trim().toLowerCase() : '';
    for (const row of table.tBodies[0].rows) {
      const flagged = row.querySelector('.badge.warn, .badge.bad') !== null;
      row.hidden = !row.textContent.toLowerCase().includes(query) || (only && only.checked && !flagged);
    }
  };
  for (const el of document.querySelectorAll('[data-filter], [data-flagged]')) {
    el.addEventListener('input', () => filter(el.dataset.filter || el.dataset.flagged));
  }
  const reveal = () => {
    const id = decodeURIComponent(location.hash.slice(1));
    const target = id && document.getElementById(id);
    const details = target && target.querySelector('details');
    if (details) details.open = true;
  };
  window.addEventListener('hashchange', reveal);
  reveal();
})();
"""
