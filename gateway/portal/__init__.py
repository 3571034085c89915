"""The asyncio iSCSI portal (hosts gateway/iscsi's state machines) and its live registry."""
