"""whatsapp: threads, sends, Twilio message parts, media references

Revision ID: 0005_whatsapp
Revises: 0001_skeleton
Create Date: 2026-11-23 12:50:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
import api.db


revision = '0005_whatsapp'
down_revision = '0001_skeleton'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('whatsapp_thread',
    sa.Column('address', sa.String(length=128), nullable=False),
    sa.Column('conversation_id', sa.String(length=32), nullable=False),
    sa.Column('created_at', api.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversation.id'],
                            name=op.f('fk_whatsapp_thread_conversation_id_conversation')),
    sa.PrimaryKeyConstraint('address', name=op.f('pk_whatsapp_thread')),
    sa.UniqueConstraint('conversation_id', name=op.f('uq_whatsapp_thread_conversation_id'))
    )
    op.create_table('whatsapp_send',
    sa.Column('message_id', sa.Integer(), nullable=False),
    sa.Column('conversation_id', sa.String(length=32), nullable=False),
    sa.Column('purpose', sa.String(length=32), nullable=True),
    sa.Column('content_variables', sa.JSON(), nullable=True),
    sa.Column('options', sa.JSON(), nullable=True),
    sa.Column('template_sid', sa.String(length=64), nullable=True),
    sa.Column('parts_total', sa.Integer(), nullable=False),
    sa.Column('parts_sent', sa.Integer(), nullable=False),
    sa.Column('uncertain_since', api.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('error_code', sa.String(length=16), nullable=True),
    sa.Column('held_reason', sa.Text(), nullable=True),
    sa.Column('created_at', api.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversation.id'],
                            name=op.f('fk_whatsapp_send_conversation_id_conversation')),
    sa.ForeignKeyConstraint(['message_id'], ['message.id'], name=op.f('fk_whatsapp_send_message_id_message')),
    sa.PrimaryKeyConstraint('message_id', name=op.f('pk_whatsapp_send'))
    )
    op.create_index(op.f('ix_whatsapp_send_conversation_id'), 'whatsapp_send', ['conversation_id'], unique=False)
    op.create_table('whatsapp_part',
    sa.Column('sid', sa.String(length=64), nullable=False),
    sa.Column('message_id', sa.Integer(), nullable=False),
    sa.Column('part_index', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('error_code', sa.String(length=16), nullable=True),
    sa.Column('created_at', api.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', api.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['message_id'], ['message.id'], name=op.f('fk_whatsapp_part_message_id_message')),
    sa.PrimaryKeyConstraint('sid', name=op.f('pk_whatsapp_part'))
    )
    op.create_index(op.f('ix_whatsapp_part_message_id'), 'whatsapp_part', ['message_id'], unique=False)
    op.create_table('whatsapp_media',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('message_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('url', sa.Text(), nullable=True),
    sa.Column('content_type', sa.String(length=128), nullable=True),
    sa.Column('data', sa.JSON(), nullable=True),
    sa.Column('created_at', api.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], ['message.id'], name=op.f('fk_whatsapp_media_message_id_message')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_whatsapp_media'))
    )
    op.create_index(op.f('ix_whatsapp_media_message_id'), 'whatsapp_media', ['message_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_whatsapp_media_message_id'), table_name='whatsapp_media')
    op.drop_table('whatsapp_media')
    op.drop_index(op.f('ix_whatsapp_part_message_id'), table_name='whatsapp_part')
    op.drop_table('whatsapp_part')
    op.drop_index(op.f('ix_whatsapp_send_conversation_id'), table_name='whatsapp_send')
    op.drop_table('whatsapp_send')
    op.drop_table('whatsapp_thread')
