"""Raw records in: loading a site's exports, and generating realistic sample data."""
