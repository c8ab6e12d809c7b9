"""Progress bars that tell the truth: on a terminal and in a log file, before and after compilation."""

from __future__ import annotations

import sys

LOG_INTERVAL = 30.0  # seconds between updates when stderr is not a terminal (a log file gets a line, not a stream)


def bar(total: int, *, show: bool, initial: int = 0, **options):
    """A tqdm bar on stderr: live (every 0.5 s) on a terminal; every :data:`LOG_INTERVAL` s into a file or pipe.

    Written to a file, a bar refreshed every 0.5 s left hundreds of kilobytes of carriage-return updates in an hour;
    this one leaves a line every half minute.
    """
    from tqdm.auto import tqdm

    live = bool(getattr(sys.stderr, "isatty", lambda: False)())
    return tqdm(total=total, initial=initial, disable=not show, dynamic_ncols=live,
                mininterval=0.5 if live else LOG_INTERVAL, maxinterval=10.0 if live else LOG_INTERVAL, **options)


def restart_clock(progress) -> None:
    """Start ``progress``'s clock again from where it stands, keeping its count.

    The first engine call compiles (seconds to a minute); a rate measured over it promised ETAs of hundreds of
    hours. The driver calls this once that call has returned.
    """
    n = progress.n
    progress.reset(total=progress.total)
    progress.initial = progress.n = progress.last_print_n = n
    progress.refresh()
