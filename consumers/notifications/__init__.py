"""The notifications service: e-mails the customer at each step of the order's saga."""
