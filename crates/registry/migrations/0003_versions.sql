-- Repositories are versioned records like the control plane's: every change of a
-- repository's settings (tag immutability, lifecycle policy) bumps its version.
ALTER TABLE repositories ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
