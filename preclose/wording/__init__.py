"""What people read: notifications, reports, timelines, the closing page, service names."""
