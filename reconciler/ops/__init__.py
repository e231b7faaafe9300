"""Operations around the loop: log rotation and reading, backup and restore, autostart,
alerts and the git-synced folder. Each module is one idea; the daemon starts their
background tasks and the CLI calls their entry points."""
