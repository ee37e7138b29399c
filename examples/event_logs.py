"""Two raw event logs a user recognises, for the minimal ``shape: events`` source.

Both are invented here from small latent-state models (seeded numpy, no loops over customers);
neither is a copy of a public data set. They exist so that the point-in-time path can be tried on
logs "as they come": one events table with a customer id and a time, nothing else required.

``streaming/`` (``make_streaming``): a music-streaming click log in the style of public
streaming-service data sets. ``events.jsonl`` (JSON Lines) has ``userId`` (integer), ``ts``
(epoch **milliseconds**), ``sessionId`` (integer, unique per session), ``page`` (``NextSong``,
``Thumbs Up``, ``Thumbs Down``, ``Add to Playlist``, ``Add Friend``, ``Home``, ``Settings``,
``Help``, ``Error``, ``Roll Advert``, ``Upgrade``, ``Submit Upgrade``, ``Downgrade``,
``Submit Downgrade``, ``Logout``, ``Cancel``, ``Cancellation Confirmation``), ``level``
(``free``/``paid``, the level when the event happened) and ``length`` (song seconds, only on
``NextSong``, else null). ``users.csv`` has ``userId``, ``gender``, ``registration`` (epoch ms),
``location`` (``City, ST``) and ``userAgent``. Churn is hybrid: a ``Cancellation Confirmation``
ends a user (nothing of theirs follows it), other users lapse into silence.

``purchases/`` (``make_purchases``): non-contractual retail, ``purchases.csv`` with ``cust``,
``bought_on`` (a date), ``quantity`` and ``amount``. Churn is inactivity only.

The ``source.yaml`` written next to each log uses these keys (to align with the events-source
reader): ``shape: events``, ``name``, ``observation: {start, end}`` (monthly observation dates),
``churn: {cancellation_event: <event_type value>, inactive_days: N}`` (either or both),
``tables.events: {path, columns: {customer_id, event_time, event_type, session_id}, measures}``
and ``tables.customers: {path, columns: {customer_id, signup_date}}``. ``level``, ``gender``,
``location`` and ``userAgent`` are left to the reader (attributes / profile columns).

Why the churn is findable but not given away: every hazard is driven by latent states
(engagement, frustration, plan level, satisfaction) that the log shows only through noisy
counts: sessions and songs per window, Thumbs Down / Error / Roll Advert exposure, Downgrade
visits and downgrades, tenure, basket size and purchase rhythm. No page announces a cancellation
in advance: ``Cancel`` is only ever seen seconds before its ``Cancellation Confirmation``, as in
the real flows, so it falls in the same label window.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd

STREAMING_START = date(2024, 1, 1)
STREAMING_DAYS = 366  # all of 2024: the last observation date (2024-12-01) has 30 days after it

STREAMING_YAML = """\
# A music-streaming click log as it comes: one JSON line per page view, plus a users table.
shape: events
name: music-streaming
observation: {start: 2024-03-01, end: 2024-12-01}   # monthly observation dates, both included
churn: {cancellation_event: "Cancellation Confirmation", inactive_days: 30}
tables:
  events:
    path: events.jsonl
    columns: {customer_id: userId, event_time: ts, event_type: page, session_id: sessionId}
    measures: [length]
  customers:
    path: users.csv
    columns: {customer_id: userId, signup_date: registration}
"""

PURCHASES_START = date(2023, 6, 1)
PURCHASES_DAYS = 731  # to 2025-05-31: the last observation date (2025-03-01) has 90 days after it

PURCHASES_YAML = """\
shape: events
name: purchases
observation: {start: 2024-04-01, end: 2025-03-01}
churn: {inactive_days: 90}
tables:
  events:
    path: purchases.csv
    columns: {customer_id: cust, event_time: bought_on}
    measures: [quantity, amount]
economics:                      # optional; without it: cost 10, success 0.3, value 240
  retained_value: {measure: amount, months: 12}   # a customer is worth 12 months of spending
  capacity: "10%"               # call at most a tenth of the month's customers
"""

# Page counts drawn per user-day, in this column order (see _streaming_day).
COUNTED_PAGES = (
    "NextSong",
    "Thumbs Up",
    "Thumbs Down",
    "Add to Playlist",
    "Add Friend",
    "Roll Advert",
    "Error",
    "Help",
    "Settings",
    "Upgrade",
    "Downgrade",
    "Home",
)
# Pages with a fixed place in a session: sort keys (random pages draw keys in [0, 1)).
FIRST_HOME, SUBMIT, LOGOUT, CANCEL, CONFIRMATION = -1.0, 5.0, 10.0, 11.0, 12.0
USER_AGENTS = (
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0", 1.0),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 Safari/17.2", 0.7),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) Mobile/15E148", 0.8),
    ("Mozilla/5.0 (Linux; Android 14; SM-A546B) AppleWebKit/537.36 Chrome/120.0 Mobile", 2.6),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0", 1.6),
)
LOCATIONS = (
    "Los Angeles, CA", "New York, NY", "Chicago, IL", "Houston, TX", "Phoenix, AZ",
    "Philadelphia, PA", "San Antonio, TX", "San Diego, CA", "Dallas, TX", "Seattle, WA",
    "Denver, CO", "Boston, MA", "Atlanta, GA", "Miami, FL", "Portland, OR", "Detroit, MI",
    "Minneapolis, MN", "Raleigh, NC", "Columbus, OH", "Kansas City, MO",
)  # fmt: skip


def make_streaming(folder: Path, users: int = 1_000, seed: int = 23) -> Path:
    """Write ``events.jsonl``, ``users.csv`` and ``source.yaml`` into ``folder``."""
    events, profile = simulate_streaming(users, seed)
    folder.mkdir(parents=True, exist_ok=True)
    events.to_json(folder / "events.jsonl", orient="records", lines=True)
    profile.to_csv(folder / "users.csv", index=False)
    (folder / "source.yaml").write_text(STREAMING_YAML)
    return folder


def make_purchases(folder: Path, customers: int = 3_000, seed: int = 31) -> Path:
    """Write ``purchases.csv`` and ``source.yaml`` into ``folder``."""
    purchases = simulate_purchases(customers, seed)
    folder.mkdir(parents=True, exist_ok=True)
    purchases.to_csv(folder / "purchases.csv", index=False)
    (folder / "source.yaml").write_text(PURCHASES_YAML)
    return folder


def _expit(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def simulate_streaming(users: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The click log and the users table, users simulated together one day at a time.

    Latent per user: engagement ``e`` (a drifting random walk that sets the session rate),
    frustration ``f`` (mean-reverting, pushed up by errors, Thumbs Down and adverts) and the
    plan level. Cancellation and lapse hazards follow those states, not the counts themselves.
    """
    rng = np.random.default_rng(seed)
    n = users
    existing = rng.random(n) < 0.35
    arrival = np.where(existing, 0, rng.integers(0, STREAMING_DAYS - 45, n))
    agent = rng.choice(len(USER_AGENTS), n, p=[0.34, 0.2, 0.22, 0.16, 0.08])
    traits = {
        "arrival": arrival,
        "registration_day": np.where(existing, -rng.integers(1, 540, n), arrival),
        "error_factor": np.array([factor for _, factor in USER_AGENTS])[agent],
        "session_rate": np.exp(rng.normal(np.log(0.18), 0.4, n)),  # sessions a day at e = 0
        "song_mean": np.exp(rng.normal(np.log(1.7), 0.35, n)),  # songs a session at e = 0
        "drift": rng.normal(-0.0006, 0.0015, n),  # daily engagement trend: many fade, some grow
        "frustration_mean": rng.normal(0.0, 0.7, n),
        "frailty": np.exp(rng.normal(0.0, 0.3, n)),  # what the log never shows
    }
    preferred_hour = rng.uniform(7, 19, n)
    state = {
        "e": rng.normal(0.0, 0.3, n),
        "f": traits["frustration_mean"] + rng.normal(0.0, 0.3, n),
        "paid": rng.random(n) < 0.45,
        "alive": np.ones(n, dtype=bool),
        "downgraded_on": np.full(n, -999),
    }
    days = [_streaming_day(rng, day, state, traits) for day in range(STREAMING_DAYS)]
    records = {key: np.concatenate([d[key] for d in days]) for key in days[0]}
    events = _expand_sessions(rng, records, preferred_hour)

    day0_ms = _epoch_ms(STREAMING_START)
    seconds_before = rng.integers(600, 86_400, n)  # registered a while before the first visit
    profile = pd.DataFrame(
        {
            "userId": np.arange(n) + 1,
            "gender": rng.choice(["F", "M"], n),
            "registration": day0_ms
            + traits["registration_day"] * 86_400_000
            - seconds_before * 1000,
            "location": np.array(LOCATIONS)[rng.integers(0, len(LOCATIONS), n)],
            "userAgent": np.array([agent_text for agent_text, _ in USER_AGENTS])[agent],
        }
    )
    return events, profile


def _streaming_day(
    rng: np.random.Generator, day: int, state: dict, traits: dict
) -> dict[str, np.ndarray]:
    """One day for every user: hazards, sessions, page counts, level changes, state update."""
    arrival, frailty, error_factor = traits["arrival"], traits["frailty"], traits["error_factor"]
    n = arrival.size
    e, f, paid, alive = state["e"], state["f"], state["paid"], state["alive"]
    active = alive & (arrival <= day)
    free = ~paid
    tenure_years = np.minimum((day - traits["registration_day"]) / 365.0, 1.5)
    recently_downgraded = (day - state["downgraded_on"]) < 45
    # Cancelling follows frustration (seen as Thumbs Down, Help, Downgrade visits, fewer Thumbs
    # Up), a recent downgrade, the free plan's adverts and a short tenure; lapsing follows fading
    # engagement (fewer, shorter sessions). Frailty is the part no feature can see.
    cancel_hazard = (
        0.0025
        * frailty
        * np.exp(2.2 * f - 0.2 * e + 0.7 * recently_downgraded + 0.3 * free - 0.5 * tenure_years)
    )
    lapse_hazard = 0.0004 * frailty * np.exp(-1.5 * e + 0.8 * f)
    settled = day > arrival + 7  # nobody leaves in their first week
    cancels = active & settled & (rng.random(n) < cancel_hazard)
    lapses = active & settled & ~cancels & (rng.random(n) < lapse_hazard)
    alive &= ~(cancels | lapses)
    active &= ~lapses

    sessions = rng.poisson(traits["session_rate"] * np.exp(e)) * active
    sessions[(arrival == day) | cancels] = 1  # the first visit; the cancelling visit
    has = sessions > 0
    songs = rng.poisson(sessions * traits["song_mean"] * np.exp(0.3 * e))
    ads = rng.binomial(songs, 0.16) * free
    errors = rng.poisson(sessions * 0.05 * error_factor)
    thumbs_down = rng.binomial(songs, _expit(-2.3 + 1.5 * f))
    counts = np.stack(
        [
            songs,
            rng.binomial(songs, _expit(-2.0 - 0.8 * f + 0.2 * e)),
            thumbs_down,
            rng.binomial(songs, 0.03),
            rng.poisson(sessions * 0.06 * np.exp(0.3 * e)),
            ads,
            errors,
            rng.poisson(sessions * 0.06 * np.exp(1.0 * f)),
            rng.poisson(sessions * 0.04 * np.exp(0.5 * f)),
            rng.poisson(sessions * 0.08) * free,
            rng.poisson(sessions * 0.05 * np.exp(1.0 * f)) * paid,
            rng.poisson(sessions * 0.1),
        ],
        axis=1,
    )
    changing = has & ~cancels & (day > arrival)
    downgrades = changing & paid & (rng.random(n) < 0.004 * np.exp(0.8 * f))
    upgrades = changing & free & (rng.random(n) < 0.006 * np.exp(0.4 * e - 0.4 * f))
    record = {
        "user": np.flatnonzero(has),
        "day": np.full(int(has.sum()), day),
        "sessions": sessions[has],
        "counts": counts[has],
        "paid": paid[has],
        "downgrade": downgrades[has],
        "upgrade": upgrades[has],
        "cancel": cancels[has],
    }
    state["downgraded_on"] = np.where(downgrades, day, state["downgraded_on"])
    state["paid"] = (paid & ~downgrades) | upgrades
    state["f"] = (
        0.95 * f
        + 0.05 * traits["frustration_mean"]
        + rng.normal(0.0, 0.05, n)
        + 0.4 * errors
        + 0.04 * thumbs_down
        + 0.02 * ads
    )
    state["e"] = np.clip(
        e + traits["drift"] + rng.normal(0.0, 0.02, n) - 0.004 * np.clip(f, 0, None), -2.5, 1.0
    )
    return record


def _expand_sessions(
    rng: np.random.Generator, records: dict[str, np.ndarray], preferred_hour: np.ndarray
) -> pd.DataFrame:
    """User-day page counts to ordered, timestamped page views within numbered sessions."""
    user, day, sessions = records["user"], records["day"], records["sessions"]
    first_session = np.concatenate([[0], np.cumsum(sessions)[:-1]])
    total_sessions = int(sessions.sum())
    session_record = np.repeat(np.arange(user.size), sessions)
    nth_today = np.arange(total_sessions) - first_session[session_record]
    start_hour = np.clip(
        preferred_hour[user[session_record]] + 4.0 * nth_today + rng.normal(0, 1.0, total_sessions),
        0.0,
        21.0,
    )
    start_hour = np.where(
        records["cancel"][session_record], np.maximum(start_hour, 8.0), start_hour
    )
    session_start_ms = (
        _epoch_ms(STREAMING_START)
        + day[session_record] * 86_400_000
        + (start_hour * 3_600_000).astype(np.int64)
    )

    counts = records["counts"]
    pages = np.array(
        [*COUNTED_PAGES, "Submit Downgrade", "Submit Upgrade", "Logout", "Cancel",
         "Cancellation Confirmation"]
    )  # fmt: skip
    code = {name: i for i, name in enumerate(pages)}
    # Pages drawn per user-day land in one of that day's sessions at random.
    flat_record = np.repeat(np.repeat(np.arange(user.size), counts.shape[1]), counts.ravel())
    flat_page = np.repeat(np.tile(np.arange(counts.shape[1]), user.size), counts.ravel())
    flat_session = first_session[flat_record] + (
        rng.random(flat_record.size) * sessions[flat_record]
    ).astype(np.int64)
    flat_key = rng.random(flat_record.size)
    # Pages with a place: a Home to open most sessions, Logout to close most of them, the plan
    # change (its page then its submit) and the cancellation flow at the end of the day's last.
    last_session = first_session + sessions - 1
    logout = rng.random(total_sessions) < 0.35
    logout &= ~records["cancel"][session_record]
    placed = [
        (np.flatnonzero(rng.random(total_sessions) < 0.6), code["Home"], FIRST_HOME),
        (np.flatnonzero(logout), code["Logout"], LOGOUT),
    ]
    for flag, page_name, submit_name in (
        ("downgrade", "Downgrade", "Submit Downgrade"),
        ("upgrade", "Upgrade", "Submit Upgrade"),
    ):
        chosen = last_session[records[flag]]
        placed += [(chosen, code[page_name], SUBMIT - 0.5), (chosen, code[submit_name], SUBMIT)]
    cancelled = last_session[records["cancel"]]
    placed += [
        (cancelled, code["Cancel"], CANCEL),
        (cancelled, code["Cancellation Confirmation"], CONFIRMATION),
    ]
    session_of = np.concatenate([flat_session, *(s for s, _, _ in placed)])
    page_of = np.concatenate([flat_page, *(np.full(s.size, c) for s, c, _ in placed)])
    key_of = np.concatenate([flat_key, *(np.full(s.size, k) for s, _, k in placed)])
    order = np.lexsort((key_of, session_of))
    session_of, page_of = session_of[order], page_of[order]

    is_song = page_of == code["NextSong"]
    length = np.where(
        is_song, np.clip(rng.lognormal(np.log(235.0), 0.28, page_of.size), 30.0, 1200.0), np.nan
    )
    seconds = np.where(is_song, length, 1.0 + rng.exponential(14.0, page_of.size))
    elapsed = np.cumsum(seconds) - seconds
    session_first_row = np.searchsorted(session_of, np.arange(total_sessions))
    offset_s = elapsed - elapsed[session_first_row[session_of]]
    ts = session_start_ms[session_of] + (offset_s * 1000).astype(np.int64)
    record_of = session_record[session_of]
    paid = records["paid"][record_of]
    frame = pd.DataFrame(
        {
            "ts": ts,
            "userId": user[record_of] + 1,
            "sessionId": session_of + 1,
            "page": pages[page_of],
            "level": np.where(paid, "paid", "free"),
            "length": np.round(length, 2),
        }
    )
    return frame.sort_values(["ts", "sessionId"], kind="stable").reset_index(drop=True)


def simulate_purchases(customers: int, seed: int) -> pd.DataFrame:
    """BG/NBD-like buyers: a latent rate, a chance to die after each purchase, a drifting mood.

    Each customer's purchase rate and basket follow a satisfaction random walk ``s`` (with a
    personal trend), and the chance to stop for good after a purchase rises as ``s`` falls, so
    rhythm, trend and basket size say more about the future than recency alone.
    """
    rng = np.random.default_rng(seed)
    n = customers
    first_day = np.where(
        rng.random(n) < 0.3, rng.integers(0, 60, n), rng.integers(0, PURCHASES_DAYS - 120, n)
    )
    rate = rng.gamma(1.3, 1 / 28.0, n)  # purchases a day at s = 0
    dropout = rng.beta(1.0, 14.0, n)  # chance to stop for good after a purchase at s = 0
    basket = rng.gamma(2.0, 0.8, n)  # extra items a purchase at s = 0
    unit_price = np.exp(rng.normal(np.log(18.0), 0.5, n))
    trend = rng.normal(-0.002, 0.004, n)
    mood = rng.normal(0.0, 0.5, n)
    alive = np.ones(n, dtype=bool)
    rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for day in range(PURCHASES_DAYS):
        active = alive & (first_day <= day)
        buys = active & (
            (first_day == day) | (rng.random(n) < 1 - np.exp(-rate * np.exp(0.8 * mood)))
        )
        who = np.flatnonzero(buys)
        quantity = 1 + rng.poisson(basket[who] * np.exp(1.0 * mood[who]))
        rows.append((who, np.full(who.size, day), quantity))
        stops = rng.random(who.size) < np.clip(dropout[who] * np.exp(-1.2 * mood[who]), 0, 0.9)
        alive[who[stops]] = False
        mood = mood + trend * active + rng.normal(0.0, 0.04, n) * active
    who, day, quantity = (np.concatenate(part) for part in zip(*rows, strict=True))
    amount = quantity * unit_price[who] * np.exp(rng.normal(0.0, 0.25, who.size))
    bought_on = pd.Timestamp(PURCHASES_START) + pd.to_timedelta(day, unit="D")
    codes = rng.permutation(n) + 10_000
    return pd.DataFrame(
        {
            "cust": [f"C{code}" for code in codes[who]],
            "bought_on": bought_on.strftime("%Y-%m-%d"),
            "quantity": quantity,
            "amount": np.round(amount, 2),
        }
    ).sort_values(["bought_on", "cust"], ignore_index=True)


def _epoch_ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)
