"""Operations around a deploy: status, prechecks, post-deploy client files, compose export."""
