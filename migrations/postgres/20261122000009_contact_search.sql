-- Contact search by prefix, answered from indexes (email has its own,
-- lower(email), and mobile too). A contact's name, from its name or
-- first/last name fields and lower-cased, is kept in a column of its own so
-- it can be indexed; contacts stored before it are filled in by the server
-- at start (contacts::fill_search_names).
ALTER TABLE contacts ADD COLUMN search_name TEXT;
CREATE INDEX contacts_search_name ON contacts (search_name) WHERE search_name IS NOT NULL;
