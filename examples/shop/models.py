"""The shop's models: the source of examples/gitops/manifests (see `dataflow manifest generate`)."""

from datetime import datetime
from decimal import Decimal

from dataflow import DataFlow, Field

db = DataFlow()


@db.model
class User:
    email: str = Field(max_length=255, unique=True)
    name: str
    is_active: bool = True
    created_at: datetime = None


@db.model
class Order:
    user_id: int = Field(references="user.id", on_delete="CASCADE", index=True)
    total: Decimal = Field(default=Decimal("0"), check="total >= 0")
    status: str = "pending"
    metadata: dict = None
    created_at: datetime = None

    __dataflow__ = {
        "postgresql": {
            "jsonb_gin_indexes": ["metadata"],
            "partial_indexes": [{"fields": ["status"], "condition": "status <> 'delivered'"}],
        }
    }
