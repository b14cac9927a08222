"""The throwaway servers come up, accept the test login and speak SQL."""
import sqlalchemy as sa


def test_postgres_server_answers(postgres_url):
    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT current_setting('server_version_num')::int / 10000")).scalar() == 15
        assert conn.execute(sa.text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")).scalar() is True
    engine.dispose()


def test_mariadb_server_answers(mariadb_url):
    engine = sa.create_engine(mariadb_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT DATABASE()")).scalar() == "govdata"
        assert "MariaDB" in conn.execute(sa.text("SELECT VERSION()")).scalar()
    engine.dispose()
