"""Storage operations: keyword-only functions over an explicit session, one unit of work each.

Every function that writes commits before it returns (or rolls back and raises), so a caller never
holds a half-done change. Lookups return `X | None`. Read-modify-write operations first lock the
row they change (`SELECT ... FOR UPDATE` on PostgreSQL, the database write lock on SQLite), so two
coordinators, or a webhook and a sync, cannot interleave and lose an update.
"""

from preclose.storage.repository._base import (
    LIVE_CLOSING_STATUSES,
    TERMINAL_ITEM_STATUSES,
    TRACKED_CLOSING_STATUSES,
    PlacedItem,
    PlacementConflictError,
    StaleClosingError,
)
from preclose.storage.repository.changes import (
    NextAttempt,
    correct_address,
    get_item_for_line,
    list_attempts,
    list_lines_to_repick,
    placement_categories,
    retime_lines,
    settle_closing_placements,
    start_next_attempt,
    store_closing_change,
    withdraw_placement,
)
from preclose.storage.repository.closings import (
    Attention,
    advance_closing,
    create_or_get_closing,
    get_closing,
    get_closing_by_crm_id,
    get_closings,
    list_closings,
    mark_needs_attention,
    transition_closing,
    update_closing_request,
)
from preclose.storage.repository.crm import ItemContext as ItemContext
from preclose.storage.repository.crm import WebhookFigures as WebhookFigures
from preclose.storage.repository.crm import count_webhook_refusal as count_webhook_refusal
from preclose.storage.repository.crm import create_api_key as create_api_key
from preclose.storage.repository.crm import find_crm_request as find_crm_request
from preclose.storage.repository.crm import finish_crm_request as finish_crm_request
from preclose.storage.repository.crm import finish_webhook_event as finish_webhook_event
from preclose.storage.repository.crm import get_api_key_by_hash as get_api_key_by_hash
from preclose.storage.repository.crm import get_crm_request as get_crm_request
from preclose.storage.repository.crm import get_item_context as get_item_context
from preclose.storage.repository.crm import (
    get_webhook_event_by_dedupe_key as get_webhook_event_by_dedupe_key,
)
from preclose.storage.repository.crm import latest_crm_request as latest_crm_request
from preclose.storage.repository.crm import list_api_keys as list_api_keys
from preclose.storage.repository.crm import list_crm_requests as list_crm_requests
from preclose.storage.repository.crm import list_line_orders as list_line_orders
from preclose.storage.repository.crm import list_portfolio as list_portfolio
from preclose.storage.repository.crm import list_unfinished_requests as list_unfinished_requests
from preclose.storage.repository.crm import (
    mark_crm_request_not_started as mark_crm_request_not_started,
)
from preclose.storage.repository.crm import mark_crm_request_started as mark_crm_request_started
from preclose.storage.repository.crm import read_closing_record as read_closing_record
from preclose.storage.repository.crm import record_crm_request as record_crm_request
from preclose.storage.repository.crm import record_webhook_delivery as record_webhook_delivery
from preclose.storage.repository.crm import restart_crm_request as restart_crm_request
from preclose.storage.repository.crm import revoke_api_key as revoke_api_key
from preclose.storage.repository.crm import webhook_figures as webhook_figures
from preclose.storage.repository.crm import webhook_refusals as webhook_refusals
from preclose.storage.repository.events import (
    claim_notifications,
    mark_notification_sent,
    mark_notifications_sent,
    record_api_call,
    record_notification,
    record_webhook_event,
    told_keys,
)
from preclose.storage.repository.events import last_published as last_published
from preclose.storage.repository.events import list_notification_keys as list_notification_keys
from preclose.storage.repository.events import notification_key as notification_key
from preclose.storage.repository.events import published_artifacts as published_artifacts
from preclose.storage.repository.events import record_published as record_published
from preclose.storage.repository.events import release_notifications as release_notifications
from preclose.storage.repository.items import (
    assess_line_risks,
    closings_lacking_accounts,
    fill_item_facts,
    get_item_by_offergrid_id,
    get_item_line,
    list_fulfilled_closings,
    list_items_watched,
    list_live_items_without_account,
    list_ordered_lines,
    upsert_item_status,
)
from preclose.storage.repository.placements import claim_placement as claim_placement
from preclose.storage.repository.placements import (
    claim_placement_to_send as claim_placement_to_send,
)
from preclose.storage.repository.placements import count_held_placements as count_held_placements
from preclose.storage.repository.placements import (
    create_placement_intent,
    find_placement_by_intent_key,
    get_placement,
    intent_key_for,
    list_placement_items,
    list_placements,
    mark_placement_failed,
    mark_placement_placed,
    mark_placement_unknown,
    placements_summary,
)
from preclose.storage.repository.placements import items_to_cancel as items_to_cancel
from preclose.storage.repository.placements import prepare_placements as prepare_placements
from preclose.storage.repository.placements import release_placement as release_placement
from preclose.storage.repository.plans import (
    cancel_unplaced_lines,
    get_plan_line,
    list_current_lines,
    list_due_plan_lines,
    list_plan_lines,
    save_plan,
)

__all__ = [
    "LIVE_CLOSING_STATUSES",
    "TERMINAL_ITEM_STATUSES",
    "TRACKED_CLOSING_STATUSES",
    "Attention",
    "NextAttempt",
    "PlacedItem",
    "PlacementConflictError",
    "StaleClosingError",
    "advance_closing",
    "assess_line_risks",
    "cancel_unplaced_lines",
    "claim_notifications",
    "closings_lacking_accounts",
    "correct_address",
    "create_or_get_closing",
    "create_placement_intent",
    "fill_item_facts",
    "find_placement_by_intent_key",
    "get_closing",
    "get_closing_by_crm_id",
    "get_closings",
    "get_item_by_offergrid_id",
    "get_item_for_line",
    "get_item_line",
    "get_placement",
    "get_plan_line",
    "intent_key_for",
    "list_attempts",
    "list_closings",
    "list_current_lines",
    "list_due_plan_lines",
    "list_fulfilled_closings",
    "list_items_watched",
    "list_lines_to_repick",
    "list_live_items_without_account",
    "list_ordered_lines",
    "list_placement_items",
    "list_placements",
    "list_plan_lines",
    "mark_needs_attention",
    "mark_notification_sent",
    "mark_notifications_sent",
    "mark_placement_failed",
    "mark_placement_placed",
    "mark_placement_unknown",
    "placement_categories",
    "placements_summary",
    "record_api_call",
    "record_notification",
    "record_webhook_event",
    "retime_lines",
    "save_plan",
    "settle_closing_placements",
    "start_next_attempt",
    "store_closing_change",
    "told_keys",
    "transition_closing",
    "update_closing_request",
    "upsert_item_status",
    "withdraw_placement",
]
