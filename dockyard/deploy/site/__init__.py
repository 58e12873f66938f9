"""The site's configuration: globals, inventory, passwords and INI overrides, read strictly."""
