"""followup: automated, personalised follow-up DMs to sales leads who went silent."""

__version__ = "0.1.0"
