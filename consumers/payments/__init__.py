"""The payments service: authorizes the card of a placed order, refunds a cancelled one."""
