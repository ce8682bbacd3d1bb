"""The console's CSS and JavaScript (a package only so that they ship with ntorque)."""
