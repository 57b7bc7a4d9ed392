"""The course platform's schema and the migrations the generator applies, good and broken.

Revision N is `001_init.sql` plus production-like seed data. Revision N+1 ships one of the
broken migrations below (sometimes after a good one); the good migrations 002-006 build the
schema that the old application code then queries and fails on. Every broken migration
carries the SQLSTATE and relation it must fail with: the generator checks the real error
against them, so the catalog is an expectation and the database the ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass

DIR = "backend/migrations"

INIT_SQL = """\
CREATE TABLE users (
    id bigserial PRIMARY KEY,
    email text NOT NULL UNIQUE,
    display_name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE courses (
    id bigserial PRIMARY KEY,
    title text NOT NULL,
    description text,
    price_cents integer NOT NULL DEFAULT 0,
    level text NOT NULL DEFAULT 'beginner',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE lectures (
    id bigserial PRIMARY KEY,
    course_id bigint NOT NULL REFERENCES courses (id) ON DELETE CASCADE,
    position integer NOT NULL,
    title text NOT NULL,
    duration text,
    video_url text
);
CREATE INDEX lectures_course_id_idx ON lectures (course_id);
CREATE TABLE enrollments (
    user_id bigint NOT NULL REFERENCES users (id),
    course_id bigint NOT NULL REFERENCES courses (id),
    progress integer NOT NULL DEFAULT 0,
    enrolled_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, course_id)
);
CREATE VIEW course_catalog AS SELECT id, title, price_cents FROM courses;
CREATE FUNCTION course_slug(t text) RETURNS text
    LANGUAGE sql IMMUTABLE AS $$ SELECT lower(regexp_replace(t, '[^a-zA-Z0-9]+', '-', 'g')) $$;
"""

# Production data the broken migrations trip over: mixed-case duplicate e-mails, a
# negative price, durations that are not integers.
SEED_SQL = """\
INSERT INTO users (email, display_name) VALUES
    ('ana@example.com', 'Ana'), ('Ana@Example.com', 'Ana B'), ('li@example.com', 'Li');
INSERT INTO courses (title, description, price_cents, level) VALUES
    ('Intro to SQL', 'Tables and queries', 0, 'beginner'),
    ('Postgres Internals', 'MVCC and WAL', 4900, 'advanced'),
    ('Data Modelling', 'Keys and constraints', -100, 'intermediate');
INSERT INTO lectures (course_id, position, title, duration, video_url) VALUES
    (1, 1, 'SELECT', '12:30', 'https://cdn.example.com/v/1.mp4'),
    (1, 2, 'JOIN', '9', 'https://cdn.example.com/v/2.mp4'),
    (2, 1, 'Heap pages', '1h', 'https://cdn.example.com/v/3.mp4');
INSERT INTO enrollments (user_id, course_id, progress) VALUES
    (1, 1, 40), (1, 2, 10), (2, 1, 0), (3, 3, 75);
"""

# Applied by revision N+1 of the "rename" deploy; each is correct SQL that breaks old code.
GOOD: dict[str, str] = {
    "002_rename_course_title.sql": "ALTER TABLE courses RENAME COLUMN title TO name;\n",
    "003_move_lecture_videos.sql": (
        "CREATE TABLE lecture_videos (\n"
        "    lecture_id bigint PRIMARY KEY REFERENCES lectures (id) ON DELETE CASCADE,\n"
        "    url text NOT NULL\n);\n"
        "INSERT INTO lecture_videos (lecture_id, url)\n"
        "    SELECT id, video_url FROM lectures WHERE video_url IS NOT NULL;\n"
        "ALTER TABLE lectures DROP COLUMN video_url;\n"
    ),
    "004_rename_enrollments.sql": "ALTER TABLE enrollments RENAME TO course_enrollments;\n",
    "005_course_slug_by_id.sql": (
        "DROP FUNCTION course_slug(text);\n"
        "CREATE FUNCTION course_slug(course_id bigint) RETURNS text LANGUAGE sql STABLE AS\n"
        "    $$ SELECT lower(regexp_replace(name, '[^a-zA-Z0-9]+', '-', 'g'))"
        " FROM courses WHERE id = course_id $$;\n"
    ),
    "006_course_level_enum.sql": (
        "CREATE TYPE course_level AS ENUM ('beginner', 'intermediate', 'advanced');\n"
        "ALTER TABLE courses ALTER COLUMN level DROP DEFAULT;\n"
        "ALTER TABLE courses ALTER COLUMN level TYPE course_level USING level::course_level;\n"
        "ALTER TABLE courses ALTER COLUMN level SET DEFAULT 'beginner';\n"
    ),
    "002_course_featured.sql": (
        "ALTER TABLE courses ADD COLUMN featured boolean NOT NULL DEFAULT false;\n"
    ),
}
REV2 = (
    "002_rename_course_title.sql",
    "003_move_lecture_videos.sql",
    "004_rename_enrollments.sql",
    "005_course_slug_by_id.sql",
    "006_course_level_enum.sql",
)


@dataclass(frozen=True)
class Broken:
    """A migration that fails to apply, and what the server must say about it."""

    key: str
    file: str
    sql: str
    sqlstate: str
    relation: str | None
    before: tuple[str, ...] = ()  # good migrations the same revision ships first
    blocker: bool = False  # another session holds a lock on enrollments meanwhile


BROKEN: tuple[Broken, ...] = (
    Broken(
        "index-renamed-column",
        "003_index_course_title.sql",
        "CREATE INDEX courses_title_idx ON courses (title);\n",
        "42703",
        "title",
        before=("002_rename_course_title.sql",),
    ),
    Broken(
        "not-null-no-default",
        "002_add_course_slug.sql",
        "ALTER TABLE courses ADD COLUMN slug text NOT NULL;\n",
        "23502",
        "slug",
    ),
    Broken(
        "syntax-error",
        "002_lecture_is_free.sql",
        "ALTER TABLE lectures ADD COLUMN is_free boolean NOT NULL DEFAULT false\n"
        "CREATE INDEX lectures_is_free_idx ON lectures (is_free);\n",
        "42601",
        None,
    ),
    Broken(
        "cast-invalid-input",
        "003_lecture_duration_seconds.sql",
        "ALTER TABLE lectures ALTER COLUMN duration TYPE integer USING duration::integer;\n",
        "22P02",
        None,
        before=("002_course_featured.sql",),
    ),
    Broken(
        "cast-datatype-mismatch",
        "002_lecture_duration_integer.sql",
        "ALTER TABLE lectures ALTER COLUMN duration TYPE integer;\n",
        "42804",
        "duration",
    ),
    Broken(
        "missing-table",
        "002_create_certificates.sql",
        "CREATE TABLE certificates (\n    id bigserial PRIMARY KEY,\n"
        "    user_id bigint NOT NULL REFERENCES users (id),\n"
        "    course_id bigint NOT NULL REFERENCES course (id)\n);\n",
        "42P01",
        "course",
    ),
    Broken(
        "duplicate-index",
        "002_index_lectures_course.sql",
        "CREATE INDEX lectures_course_id_idx ON lectures (course_id);\n",
        "42P07",
        "lectures_course_id_idx",
    ),
    Broken(
        "duplicate-column",
        "002_users_created_at.sql",
        "ALTER TABLE users ADD COLUMN created_at timestamptz NOT NULL DEFAULT now();\n",
        "42701",
        "created_at",
    ),
    Broken(
        "lock-timeout",
        "002_enrollments_completed_at.sql",
        "SET LOCAL lock_timeout = '200ms';\n"
        "ALTER TABLE enrollments ADD COLUMN completed_at timestamptz;\n",
        "55P03",
        None,
        blocker=True,
    ),
    Broken(
        "statement-timeout",
        "002_backfill_course_stats.sql",
        "SET LOCAL statement_timeout = '200ms';\n"
        "CREATE TABLE course_stats AS\n"
        "    SELECT c.id AS course_id, count(*) AS views\n"
        "    FROM courses c CROSS JOIN generate_series(1, 50000000) AS g GROUP BY c.id;\n",
        "57014",
        None,
    ),
    Broken(
        "concurrently-in-transaction",
        "002_index_enrollments_course.sql",
        "CREATE INDEX CONCURRENTLY enrollments_course_id_idx ON enrollments (course_id);\n",
        "25001",
        None,
    ),
    Broken(
        "unique-index-duplicates",
        "002_users_email_ci.sql",
        "CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));\n",
        "23505",
        "users_email_lower_key",
    ),
    Broken(
        "undefined-function",
        "002_index_course_slug.sql",
        "CREATE INDEX courses_slug_idx ON courses (slugify(title));\n",
        "42883",
        "slugify",
    ),
    Broken(
        "undefined-type",
        "002_course_level_type.sql",
        "ALTER TABLE courses ALTER COLUMN level TYPE course_level USING level::course_level;\n",
        "42704",
        "course_level",
    ),
    Broken(
        "dependent-view",
        "003_drop_course_price.sql",
        "ALTER TABLE courses DROP COLUMN price_cents;\n",
        "2BP01",
        "price_cents",
        before=("002_course_featured.sql",),
    ),
    Broken(
        "foreign-key-backfill",
        "002_lecture_instructor.sql",
        "ALTER TABLE lectures\n"
        "    ADD COLUMN instructor_id bigint NOT NULL DEFAULT 0 REFERENCES users (id);\n",
        "23503",
        "lectures",
    ),
    Broken(
        "check-violated",
        "002_course_price_check.sql",
        "ALTER TABLE courses ADD CONSTRAINT courses_price_nonnegative CHECK (price_cents >= 0);\n",
        "23514",
        "courses_price_nonnegative",
    ),
)


def path(name: str) -> str:
    return f"{DIR}/{name}"


def migration_sql(name: str) -> str:
    if name == "001_init.sql":
        return INIT_SQL
    if name in GOOD:
        return GOOD[name]
    for broken in BROKEN:
        if broken.file == name:
            return broken.sql
    raise KeyError(name)
