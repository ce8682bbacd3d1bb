"""The console's Jinja2 templates (a package only so that they ship with ntorque)."""
