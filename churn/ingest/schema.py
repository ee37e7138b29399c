"""The raw-table contract: one declaration drives the generator, staging, checks and docs.

Every source (the synthetic generator, the user's files, files dropped into ``incoming/``) is
mapped onto these five tables. Staging SQL, the rejects' reasons, the asset checks and the column
descriptions shown in the Dagster UI are all generated from this module, so a column is described
and validated in exactly one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Column:
    """One column of a raw table and the rules a staged row must satisfy."""

    name: str
    sql_type: str
    description: str
    required: bool = True
    allowed: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    parse: str | None = None
    """SQL over the trimmed text ``{text}`` giving the typed value (NULL when it does not
    parse), for values a plain cast cannot read: an event log's epoch times, for instance."""


@dataclass(frozen=True)
class Table:
    """A raw table: its key, its time column (for point-in-time cuts) and its columns."""

    name: str
    key: tuple[str, ...]
    description: str
    columns: tuple[Column, ...]
    time_column: str | None = None
    references_customers: bool = field(default=True)

    @property
    def column_names(self) -> list[str]:
        return [column.name for column in self.columns]

    def column(self, name: str) -> Column:
        return next(column for column in self.columns if column.name == name)


REGIONS = ("north", "south", "east", "west", "central")
PLANS = ("basic", "standard", "premium")
CONTRACTS = ("monthly", "annual")
PAYMENT_METHODS = ("card", "bank_transfer", "paypal", "invoice")
CHANNELS = ("organic", "paid_search", "social", "referral", "partner")
EVENT_TYPES = ("login", "page_view", "feature_use", "export", "share")
PAYMENT_STATUSES = ("succeeded", "failed")
TICKET_CATEGORIES = ("billing", "technical", "account", "cancellation_request", "other")
TICKET_PRIORITIES = ("low", "medium", "high")
CHURN_TYPES = ("voluntary", "involuntary")
CANCEL_REASONS = (
    "price",
    "competitor",
    "not_using",
    "service_issues",
    "payment_failed",
    "moved",
    "other",
)

CUSTOMERS = Table(
    name="customers",
    key=("customer_id",),
    description="One row per customer: the profile captured at signup.",
    references_customers=False,
    columns=(
        Column("customer_id", "VARCHAR", "Stable customer identifier."),
        Column("signup_date", "DATE", "First day of the subscription."),
        Column("region", "VARCHAR", "Sales region.", allowed=REGIONS),
        Column("plan", "VARCHAR", "Subscribed plan tier.", allowed=PLANS),
        Column(
            "monthly_fee",
            "DOUBLE",
            "Monthly price in the account currency.",
            minimum=0,
            maximum=10_000,
        ),
        Column("contract", "VARCHAR", "Billing commitment.", allowed=CONTRACTS),
        Column("payment_method", "VARCHAR", "How the customer pays.", allowed=PAYMENT_METHODS),
        Column("age", "INTEGER", "Age of the account holder in years.", minimum=16, maximum=110),
        Column(
            "acquisition_channel", "VARCHAR", "Channel the customer came through.", allowed=CHANNELS
        ),
    ),
)

EVENTS = Table(
    name="events",
    key=("event_id",),
    time_column="event_time",
    description="Product usage events, grouped into sessions.",
    columns=(
        Column("event_id", "VARCHAR", "Unique event identifier."),
        Column("customer_id", "VARCHAR", "Customer who produced the event."),
        Column("session_id", "VARCHAR", "Session the event belongs to."),
        Column("event_time", "TIMESTAMP", "When the event happened (UTC)."),
        Column("event_type", "VARCHAR", "Kind of interaction.", allowed=EVENT_TYPES),
        Column(
            "duration_seconds",
            "DOUBLE",
            "Time spent on the event in seconds.",
            minimum=0,
            maximum=86_400,
        ),
    ),
)

PAYMENTS = Table(
    name="payments",
    key=("payment_id",),
    time_column="payment_date",
    description="Monthly billing attempts; a failed first attempt is retried once.",
    columns=(
        Column("payment_id", "VARCHAR", "Unique payment attempt identifier."),
        Column("customer_id", "VARCHAR", "Customer billed."),
        Column("payment_date", "DATE", "Day of the billing attempt."),
        Column("amount", "DOUBLE", "Amount charged.", minimum=0, maximum=100_000),
        Column("status", "VARCHAR", "Outcome of the attempt.", allowed=PAYMENT_STATUSES),
        Column("payment_method", "VARCHAR", "Method charged.", allowed=PAYMENT_METHODS),
        Column(
            "attempt", "INTEGER", "1 for the first attempt, 2 for the retry.", minimum=1, maximum=10
        ),
    ),
)

TICKETS = Table(
    name="tickets",
    key=("ticket_id",),
    time_column="created_at",
    description="Support tickets opened by customers.",
    columns=(
        Column("ticket_id", "VARCHAR", "Unique ticket identifier."),
        Column("customer_id", "VARCHAR", "Customer who opened the ticket."),
        Column("created_at", "TIMESTAMP", "When the ticket was opened (UTC)."),
        Column("category", "VARCHAR", "Topic of the ticket.", allowed=TICKET_CATEGORIES),
        Column("priority", "VARCHAR", "Urgency set by support.", allowed=TICKET_PRIORITIES),
    ),
)

CANCELLATIONS = Table(
    name="cancellations",
    key=("customer_id",),
    time_column="cancel_date",
    description="Subscription ends: the customer is inactive from cancel_date on.",
    columns=(
        Column("customer_id", "VARCHAR", "Customer who left."),
        Column("cancel_date", "DATE", "First day without a subscription."),
        Column(
            "churn_type",
            "VARCHAR",
            "Voluntary or involuntary (failed payments).",
            allowed=CHURN_TYPES,
        ),
        Column(
            "reason",
            "VARCHAR",
            "Stated or inferred reason.",
            allowed=CANCEL_REASONS,
            required=False,
        ),
    ),
)

RAW_TABLES: tuple[Table, ...] = (CUSTOMERS, EVENTS, PAYMENTS, TICKETS, CANCELLATIONS)
TABLES_BY_NAME: dict[str, Table] = {table.name: table for table in RAW_TABLES}

TRUTH_FILE = "churn_truth.parquet"
"""Generator ground truth in ``$CHURN_HOME/truth/``: customer_id, observation_date,
true_churn_probability. Read only by evaluation, never by features."""
