"""Split-out services. Each owns its tables and reacts to events; none imports ``apps`` or
another service — they share only event contracts."""
