"""The admin channel's server side."""
