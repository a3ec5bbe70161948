-- Standalone tasks (ECS RunTask) are recorded under the reserved service name `_tasks` of
-- their app environment; the controller reads the live ones of every environment at once.
CREATE INDEX tasks_by_name_status ON tasks (name, last_status);
