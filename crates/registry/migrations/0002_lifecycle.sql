-- A repository's lifecycle policy (ECR's JSON text, validated before it is stored).
ALTER TABLE repositories ADD COLUMN lifecycle_policy TEXT;

-- Garbage collection looks blobs up by digest across repositories.
CREATE INDEX manifests_digest ON manifests (digest);
CREATE INDEX manifest_refs_child ON manifest_refs (child);
CREATE INDEX manifests_subject_only ON manifests (subject);
